"""Redirect targets that stay on this site."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def safe_next(value: object) -> str | None:
    """``value`` when it is a path on this site, else ``None`` (S12).

    Refuses schemes (``javascript:``, ``https:``), hosts (``//evil``), backslashes (which
    browsers read as slashes), control characters and whitespace (which browsers strip).
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2048:
        return None
    if value.startswith("//") or "\\" in value or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

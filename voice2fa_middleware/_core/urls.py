"""Redirect targets, links and cookie paths that stay on this site."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit

# A root path that is already plain: "" or "/seg/seg" of unreserved characters, no "//".
_PLAIN_ROOT = re.compile(r"(?:/[A-Za-z0-9_\-.~]+)*")
# RFC 3986 pchar without ";" and "," (cookie attribute separators) and "%" (quoted below
# unless it starts an escape), plus "/": kept as they are by ``safe_root``.
_ROOT_SAFE = "/!$&'()*+=:@~%"
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_safe_roots: dict[str, str] = {}


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


def safe_root(root: str) -> str:
    """``root`` (an ASGI ``root_path``, a ``cookie_path``) as a plain path on this site.

    The root path comes from the request when the app is mounted under a path parameter
    (``Mount("/{tenant}", app)``), so it must not reach a ``Set-Cookie`` header or a link
    as it is: ``/x;Domain=example.com`` would add cookie attributes, ``/\\evil.example``
    and ``//evil.example`` are links to another site. Every character outside RFC 3986's
    pchar (and ``;``, ``,``) is percent-quoted, leading slashes become one and trailing
    ones go: the result is ``""`` or ``/seg...``, never ``//``. Plain roots (the common
    case, on every request) cost one regex match; others are cached, bounded.
    """
    if _PLAIN_ROOT.fullmatch(root):
        return root
    safe = _safe_roots.get(root)
    if safe is None:
        quoted = _LONE_PERCENT.sub("%25", quote(root, safe=_ROOT_SAFE)).strip("/")
        safe = "/" + quoted if quoted else ""
        if len(_safe_roots) >= 1024:
            _safe_roots.clear()  # bounded: any path may come in; a miss costs little
        _safe_roots[root] = safe
    return safe


# The page to go back to travels in the pending cookie and the verify URL: bounded, so a long
# link cannot outgrow what browsers keep in a cookie (4 KB) and make every visit a new call.
MAX_NEXT = 1024


def bounded_next(path: str, query: str) -> str:
    """Where to go after verifying: the URL asked for, its path if that is too long, else ``/``."""
    full = path + ("?" + query if query else "")
    if len(full) <= MAX_NEXT:
        return full
    return path if len(path) <= MAX_NEXT else "/"

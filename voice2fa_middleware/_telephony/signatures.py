"""SignalWire's webhook signatures: computed as the carrier does, checked in constant time.

The Compatibility (LaML) API signs like Twilio: base64 HMAC-SHA1 over the full URL as it
was configured (query included), followed by each form key and value sorted by key, keyed
with the project's Signing Key, sent as ``X-SignalWire-Signature`` (alias
``X-Twilio-Signature``). SignalWire's own scheme, a hex HMAC-SHA1 over the URL followed by
the raw body, is accepted too, as the official SDK's ``RequestValidator`` does. The URL is
tried with and without the default port, since either may have been signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADERS = ("x-signalwire-signature", "x-twilio-signature")


def compute_signature(key: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The Compatibility API signature of a POST to ``url`` with form ``params``."""
    items = params.items() if isinstance(params, Mapping) else params
    # Sorted by key, then value; repeated identical pairs count once, as Twilio's validator.
    data = url + "".join(k + v for k, v in sorted(set(items)))
    mac = hmac.new(key.encode(), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def compute_body_signature(key: str, url: str, body: str) -> str:
    """SignalWire's own scheme: hex HMAC-SHA1 over the URL followed by the raw body."""
    return hmac.new(key.encode(), (url + body).encode("utf-8"), hashlib.sha1).hexdigest()


def url_variants(url: str) -> list[str]:
    """``url`` with its default port added and removed, as signers disagree on it."""
    parts = urlsplit(url)
    try:
        explicit_port = parts.port
    except ValueError:
        return [url]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    port = explicit_port or default
    without = parts._replace(netloc=prefix + host) if port == default else parts
    with_port = parts._replace(netloc=f"{prefix}{host}:{port}")
    variants = [url, urlunsplit(without), urlunsplit(with_port)]
    return list(dict.fromkeys(variants))


def is_valid_signature(
    key: str,
    url: str,
    params: Iterable[tuple[str, str]],
    body: str,
    signature: str | None,
) -> bool:
    """True when ``signature`` signs this request under ``key``, by either scheme."""
    if not signature or not key or len(signature) > 512:
        return False
    items = list(params)
    ok = False
    for candidate in url_variants(url):
        ok |= hmac.compare_digest(compute_signature(key, candidate, items).encode(), signature.encode())
        ok |= hmac.compare_digest(compute_body_signature(key, candidate, body).encode(), signature.encode())
    return ok

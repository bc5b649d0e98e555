"""The middleware's cookies: their names and flags, and the proofs of a verification.

Two cookies prove that a user verified: ``verified`` (for ``verified_max_age``) and, when
the user ticked "remember this device", ``remember``. Both are ``1.<time>.<signature>``
tokens bound to the user's ``Identity`` (``Keyring.sign_proof``). The third cookie,
``pending``, holds a challenge in progress; its contents belong to ``_challenge``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Message, Scope, Send

from .._core.crypto import Keyring
from .._core.rules import Identity
from .._core.urls import safe_root
from .._settings import Voice2FASettings

CookieKind = Literal["pending", "verified", "remember", "resubmit"]
SECURE_SCHEMES = frozenset({"https", "wss"})
# The headers an API client that keeps no cookies sends instead: the verified proof, and the
# challenge in progress (instead of the pending cookie).
PROOF_HEADER = b"x-voice2fa-proof"
CHALLENGE_HEADER = "x-voice2fa-challenge"
# What sign-out ends (S22): the verification and a challenge in progress. A remembered
# device survives sign-out by design; it ends when revoked (``Identity.version``).
SIGN_OUT_KINDS: tuple[CookieKind, ...] = ("verified", "pending", "resubmit")


_CACHE_CONTROL = (b"cache-control", b"no-store")
# What http.cookies writes as it is: a cookie name or token, and a path, with no quoting.
_PLAIN = re.compile(r"[A-Za-z0-9_\-.]+")
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9_\-./~%]*")


def accepts_html(scope: Scope) -> bool:
    """Whether the request asks for a page (a browser's navigation sends ``Accept: text/html``)."""
    for key, value in scope["headers"]:
        if key == b"accept":
            return b"text/html" in value
    return False


def wants_no_store(mode: str, scope: Scope) -> bool:
    """Whether a protected response to this request may need ``Cache-Control: no-store``
    (``protected_no_store``): ``"always"``; ``"html"``: pages a browser navigated to (API
    responses are left alone); ``"never"``. ``with_no_store`` then decides by the response."""
    return mode == "always" or (mode == "html" and accepts_html(scope))


def with_no_store(headers: list[tuple[bytes, bytes]], html_only: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Cache-Control: no-store`` added, unless the app set its own
    cache-control, or (``html_only``) the response is not HTML: verified pages must not be
    kept by the browser."""
    cached = not html_only
    for key, value in headers:
        key = key.lower()
        if key == b"cache-control":
            return headers  # the app's own choice
        if key == b"content-type" and value.startswith(b"text/html"):
            cached = True
    return [*headers, _CACHE_CONTROL] if cached else headers


def no_store(send: Send, html_only: bool) -> Send:
    """``send`` adding ``Cache-Control: no-store`` to a protected response (``with_no_store``)."""

    async def send_no_store(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            added = with_no_store(headers, html_only)
            if added is not headers:
                message = {**message, "headers": added}
        await send(message)

    return send_no_store


def forget_verification(response: Response, *, path: str = "/", name_prefix: str = "voice2fa_") -> Response:
    """End this browser's verification on ``response`` (call it in the app's sign-out).

    The next sign-in on the browser is challenged again, unless the user chose "remember
    this device". The middleware does this by itself on responses to ``logout_url``; use this
    for a sign-out route it cannot see (another app, a library's own logout route). ``path``
    and ``name_prefix`` are the middleware's ``cookie_path`` (default: the app's root path)
    and ``cookie_names_start`` (``cookie_name_prefix``, or the one derived from ``prefix``).
    ``path`` is made a plain path first (``safe_root``), as the
    middleware does with every cookie path: a root path from the URL must not add attributes.
    """
    path = safe_root(path) or "/"
    for kind in SIGN_OUT_KINDS:
        for name, secure in _spellings(name_prefix + kind, path):
            response.delete_cookie(name, path=path, secure=secure, httponly=True, samesite="lax")
    return response


def _spellings(name: str, path: str) -> list[tuple[str, bool]]:
    """A cookie's names: plain on http; ``__Host-`` on https at ``/``, else ``__Secure-``."""
    return [(name, False), ("__Host-" + name if path == "/" else "__Secure-" + name, True)]


class _Proof:
    """A kind of cookie that proves a verification, and its cache of good tokens."""

    __slots__ = ("cache", "kind", "max_age", "names", "revocable")

    def __init__(self, kind: str, names: dict[tuple[bool, bool], dict[str, str]], max_age: int) -> None:
        self.kind = kind
        # (secure, at the root path) -> name
        self.names = {key: by_kind[kind] for key, by_kind in names.items()}
        self.max_age = max_age
        self.revocable = kind == "remember"  # support may forget remembered devices
        # (token, identity) -> (signed at, cached until); a plain dict: this is the hot path.
        self.cache: dict[tuple[str, Identity], tuple[float, float]] = {}


class Cookies:
    """Names, flags, reading and writing of the middleware's three cookies."""

    def __init__(self, settings: Voice2FASettings, keys: Keyring, clock: Callable[[], float]) -> None:
        s = settings
        self.keys = keys
        self.clock = clock
        kinds = ("pending", "verified", "remember", "resubmit")
        p = s.cookie_names_start
        # (secure, path is "/") -> kind -> name. __Host- needs path "/"; under a sub-path
        # (several apps on one host) the secure cookies are __Secure- instead.
        self.names = {
            (True, True): {k: f"__Host-{p}{k}" for k in kinds},
            (True, False): {k: f"__Secure-{p}{k}" for k in kinds},
            (False, True): {k: f"{p}{k}" for k in kinds},
            (False, False): {k: f"{p}{k}" for k in kinds},
        }
        self.name_prefix = p
        # None: the app's root path (a Mount's prefix, uvicorn --root-path), else "/".
        self.path = (safe_root(s.cookie_path) or "/") if s.cookie_path is not None else None
        public_https = (s.public_url or "").startswith("https:")
        # None: secure cookies follow the request's scheme.
        self.always_secure: bool | None = (
            s.cookie_secure if s.cookie_secure is not None else (True if public_https else None)
        )
        # What proves a verification: the verified cookie, then a remembered device.
        self.proofs = [_Proof("verified", self.names, s.verified_max_age)]
        self.remember_enabled = s.remember_days > 0
        if self.remember_enabled:
            self.proofs.append(_Proof("remember", self.names, s.remember_days * 86400))
        # The "not before" time of a user's remember proofs (``RememberedDevices.not_before``),
        # set by the runtime: a sync dict lookup, the store was read before (``_flow.devices``).
        self.not_before: Callable[[str], float] | None = None
        self._max_ages = {
            "pending": s.code_ttl,
            "verified": s.verified_max_age,
            "remember": s.remember_days * 86400,
            "resubmit": s.code_ttl,
        }

    def secure(self, scope: Scope) -> bool:
        if self.always_secure is not None:
            return self.always_secure
        # scope["scheme"], not conn.url: building the URL costs more than the whole check.
        return scope.get("scheme") in SECURE_SCHEMES

    def path_of(self, scope: Scope) -> str:
        """The cookies' path: ``cookie_path``, else the app's root path made plain (``safe_root``:
        under ``Mount("/{tenant}", ...)`` the root path is whatever the URL says)."""
        if self.path is not None:
            return self.path
        root = scope.get("root_path")
        return (safe_root(root) or "/") if root else "/"

    def name(self, conn: HTTPConnection, kind: CookieKind) -> str:
        return self.names[(self.secure(conn.scope), self.path_of(conn.scope) == "/")][kind]

    def sign_out_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """``Set-Cookie`` headers deleting what sign-out ends, under every spelling."""
        response = forget_verification(Response(), path=self.path_of(scope), name_prefix=self.name_prefix)
        return [(k, v) for k, v in response.raw_headers if k == b"set-cookie"]

    def verified_at(self, cookies: dict[str, str], scope: Scope, identity: Identity) -> float | None:
        """When this user verified: the verified cookie, else a remembered device.

        This runs on every request to a protected route, so it is written for speed: one
        cookie lookup per kind of proof and, for a token seen in the last minute, one dict
        lookup instead of a signature check.
        """
        secure = self.always_secure
        if secure is None:
            secure = scope.get("scheme") in SECURE_SCHEMES
        if self.path is not None:
            at_root = self.path == "/"
        else:  # as path_of decides, without building the path for the common case
            root = scope.get("root_path")
            at_root = not root or not safe_root(root)
        now = self.clock()
        for proof in self.proofs:
            token = cookies.get(proof.names[(secure, at_root)])
            if not token:
                continue
            # Positive results only, for a minute: a signed token cannot be forged, so the
            # same token and identity always verify the same way; expiry is checked each time.
            # Each kind has its own cache: a verified token in the remember slot must not hit.
            # An entry is good until the token expires or the minute is over, whichever is first.
            key = (token, identity)
            cached = proof.cache.get(key)
            if cached is not None and now < cached[1]:
                signed_at = cached[0]
            else:
                found = self.keys.proof_time(proof.kind, identity, token, proof.max_age)
                if found is None:
                    continue
                signed_at = found
                if len(proof.cache) >= 10_000:
                    proof.cache.clear()  # bounded; a miss only costs one signature check
                proof.cache[key] = (signed_at, min(now + 60, signed_at + proof.max_age))
            # A remember proof older than the user's forgotten devices does not count (``_flow.devices``).
            if proof.revocable and self.not_before is not None and signed_at <= self.not_before(identity[0]):
                continue
            return signed_at
        # An API client that keeps no cookies sends the proof it was given in a header.
        for name, value in scope.get("headers", ()):
            if name == PROOF_HEADER:
                token = value.decode("latin-1")
                return self.keys.proof_time("verified", identity, token, self.proofs[0].max_age)
        return None

    def set(self, response: Response, conn: HTTPConnection, kind: CookieKind, value: str) -> None:
        name, path, secure = self.name(conn, kind), self.path_of(conn.scope), self.secure(conn.scope)
        max_age = self._max_ages[kind]
        if type(max_age) is int and _PLAIN.fullmatch(name) and _PLAIN.fullmatch(value) and _PLAIN_PATH.fullmatch(path):
            # Starlette's set_cookie, byte for byte (attributes in http.cookies' order), without
            # building a SimpleCookie: names and tokens that need no quoting, the common case.
            header = f"{name}={value}; HttpOnly; Max-Age={max_age}; Path={path}; SameSite=lax"
            response.raw_headers.append((b"set-cookie", (header + "; Secure" if secure else header).encode()))
            return
        response.set_cookie(name, value, max_age=max_age, path=path, secure=secure, httponly=True, samesite="lax")

    def delete(self, response: Response, conn: HTTPConnection, kind: CookieKind) -> None:
        response.delete_cookie(
            self.name(conn, kind),
            path=self.path_of(conn.scope),
            secure=self.secure(conn.scope),
            httponly=True,
            samesite="lax",
        )

    def grant(self, response: Response, conn: HTTPConnection, identity: Identity, *, remember: bool) -> str:
        """Set the proofs of a verification just made, and end the pending challenge (S16).
        Returns the verified proof (for an API client that keeps no cookies)."""
        bound = identity
        verified = self.keys.sign_proof("verified", bound)
        self.set(response, conn, "verified", verified)
        if remember and self.remember_enabled:
            self.set(response, conn, "remember", self.keys.sign_proof("remember", identity))
        self.delete(response, conn, "pending")
        return verified

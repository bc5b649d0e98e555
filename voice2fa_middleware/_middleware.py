"""``Voice2FAMiddleware``: a pure ASGI middleware that adds a voice-call second factor."""

from __future__ import annotations

import functools
import hmac
import inspect
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._audit import AuditEvent, AuditHook, EventKind, emit
from ._callers import Caller, ConsoleCaller, SignalWireCaller
from ._carrier import FINAL_STATUSES
from ._crypto import Keyring, generate_code, new_id
from ._errors import CallError, StoreError
from ._http import Connection, scope_cookies
from ._i18n import MESSAGES, negotiate, normalize_language, translate
from ._laml import LamlBuilder
from ._pages import Pages, json_response, script_json, text_response
from ._phone import check_phone, mask, region_of
from ._protection import Identify, Identity, PathRules, ProtectedPath, VerificationRequired
from ._settings import Voice2FASettings, is_loopback_host
from ._store import Bucket, Challenge, MemoryStore, Store
from ._urls import safe_next
from ._webhooks import SIGNATURE_HEADERS, is_valid_signature

logger = logging.getLogger("voice2fa")

_CODE_RE = re.compile(r"[0-9]+")
_SEPARATORS = re.compile(r"[\s\-.]")
_CALL_STATUSES = frozenset({"queued", "initiated", "ringing", "in-progress", "answered", *FINAL_STATUSES})


class _BadRequest(Exception):
    def __init__(self, status: int, error: str) -> None:
        self.status = status
        self.error = error


_SECURE_SCHEMES = frozenset({"https", "wss"})


class _Proof:
    """A kind of cookie that proves a verification, and its cache of good tokens."""

    __slots__ = ("cache", "kind", "max_age", "names")

    def __init__(self, kind: str, names: dict[bool, dict[str, str]], max_age: int) -> None:
        self.kind = kind
        self.names = {secure: by_kind[kind] for secure, by_kind in names.items()}
        self.max_age = max_age
        # (token, identity) -> (signed at, cached until); a plain dict: this is the hot path.
        self.cache: dict[tuple[str, Identity], tuple[float, float]] = {}


_new_tuple = tuple.__new__


def _as_identity(result: object) -> Identity | None:
    """What ``identify`` returned, as an ``Identity``."""
    if type(result) is tuple and len(result) == 2:
        user_id, phone = result
        if type(user_id) is str and type(phone) is str:
            # Identity(user_id, phone) without the NamedTuple's Python-level __new__: this
            # runs on every protected request.
            return _new_tuple(Identity, (user_id, phone, ""))
    if result is None:
        return None
    if isinstance(result, Identity):
        # Strings only: the proof cache is keyed by the Identity, so two identities must be
        # equal exactly when their bindings (built from str() of each field) are.
        if type(result) is Identity and all(type(x) is str for x in result):
            return result
        return _new_tuple(Identity, tuple(str(x) for x in result))
    if isinstance(result, tuple) and len(result) in (2, 3):
        return Identity(*(str(x) for x in result))
    raise TypeError("identify must return (user_id, phone), Identity or None")


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)


def route_path(scope: Scope) -> str:
    """The path the app's router sees: ``scope["path"]`` without ``root_path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


class Voice2FAHandle:
    """Put in ``scope["voice2fa"]`` for the app: is the user verified, and when."""

    __slots__ = ("_conn", "_identified", "_identity", "_mw", "_scope", "_verified_at")

    def __init__(self, middleware: Voice2FAMiddleware, scope: Scope) -> None:
        self._mw = middleware
        self._scope = scope
        self._conn: HTTPConnection | None = None
        self._identity: Identity | None = None
        self._identified = False
        self._verified_at: float | None = None

    def _connection(self) -> HTTPConnection:
        if self._conn is None:
            self._conn = Connection(self._scope)
        return self._conn

    async def identity(self) -> Identity | None:
        if not self._identified:
            self._identity = await self._mw._identify_conn(self._connection())
            self._identified = True
        return self._identity

    def _passes(self, identity: Identity, fresh_within: int | None) -> bool:
        """Whether ``identity`` holds a proof, fresh enough if asked (the time is kept)."""
        at = self._verified_at
        if at is None:
            at = self._verified_at = self._mw._verified_at(self._connection().cookies, self._scope, identity)
        return at is not None and (fresh_within is None or self._mw.clock() - at <= fresh_within)

    async def verified_at(self) -> float | None:
        """When this user last verified (Unix time), or ``None``."""
        identity = await self.identity()
        if identity is not None:
            self._passes(identity, None)  # keeps the time it finds
        return self._verified_at

    async def is_verified(self, fresh_within: int | None = None) -> bool:
        identity = await self.identity()
        return identity is not None and self._passes(identity, fresh_within)

    async def require(self, fresh_within: int | None = None) -> Response | None:
        """``None`` when the user may go on; else the response that asks for the factor.

        Anonymous users go on: signing in is the app's job.
        """
        identity = await self.identity()
        if identity is None or self._passes(identity, fresh_within):
            return None
        return await self._mw._challenge(Request(self._scope), identity)


class Voice2FAMiddleware:
    """Adds a second factor by voice call to a Starlette or FastAPI app.

    ``identify`` tells who is signed in: ``request -> (user_id, phone) | None``, sync or
    async (sync ones run in a worker thread). ``protect`` lists path patterns (or
    ``ProtectedPath`` with step-up freshness); ``@require_voice_2fa`` and
    ``Depends(VoiceTwoFactor())`` protect single routes. Everything else is in
    ``settings`` (default: ``Voice2FASettings.from_env()``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Identify,
        protect: Iterable[str | ProtectedPath] = (),
        settings: Voice2FASettings | None = None,
        store: Store | None = None,
        caller: Caller | None = None,
        on_event: AuditHook | None = None,
        select_language: Callable[[HTTPConnection], str | None] | None = None,
        template_dirs: Sequence[str | Path] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.settings = s = settings if settings is not None else Voice2FASettings.from_env()
        self._identify = identify
        self._identify_is_async = _is_async_callable(identify)
        self.rules = PathRules(protect)
        self.keys = Keyring(s.secret_keys)
        public_https = (s.public_url or "").startswith("https:")
        kinds = ("pending", "verified", "remember")
        self._cookie_names = {
            True: {k: f"__Host-voice2fa_{k}" for k in kinds},
            False: {k: f"voice2fa_{k}" for k in kinds},
        }
        # None: secure cookies follow the request's scheme.
        self._always_secure: bool | None = (
            s.cookie_secure if s.cookie_secure is not None else (True if public_https else None)
        )
        # What proves a verification: the verified cookie, then a remembered device.
        self._proofs = [_Proof("verified", self._cookie_names, s.verified_max_age)]
        if s.remember_days > 0:
            self._proofs.append(_Proof("remember", self._cookie_names, s.remember_days * 86400))
        self.clock = clock
        self.on_event = on_event
        self.select_language = select_language
        self.prefix = s.prefix
        # Path -> (one of ours?, rule): what _classify says, kept for the paths seen lately.
        self._paths: dict[str, tuple[bool, ProtectedPath | None]] = {}
        self.pages = Pages(template_dirs)
        self.laml = LamlBuilder(voice=s.voice, app_name=s.app_name)
        self.allowed_regions: frozenset[str] | None = (
            frozenset(r.upper() for r in s.allowed_countries)
            if s.allowed_countries is not None
            else (frozenset({r}) if (r := region_of(s.from_number)) else None)
        )
        self.from_number = s.from_number or "+10000000000"
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in s.trusted_proxies]
        if store is None:
            if s.redis_url:
                from ._redis_store import RedisStore

                store = RedisStore(s.redis_url, timeout=s.store_timeout)
            else:
                store = MemoryStore(max_challenges=s.memory_max_challenges, clock=clock)
        self.store: Store = store
        if caller is None:
            if s.uses_signalwire:
                assert s.space_url and s.signalwire_project and s.signalwire_token
                caller = SignalWireCaller(
                    space=s.space_url,
                    project=s.signalwire_project,
                    token=s.signalwire_token,
                    timeout=s.call_timeout,
                )
            else:
                logger.warning(
                    "voice2fa: no SignalWire credentials, using the CONSOLE CALLER: calls are "
                    "played locally and codes shown on the terminal. NOT FOR PRODUCTION."
                )
                caller = ConsoleCaller(signing_key=s.webhook_key)
        self.caller: Caller = caller
        self.dev_pages = s.dev_pages if s.dev_pages is not None else isinstance(caller, ConsoleCaller)
        if s.ephemeral_secret:
            logger.warning(
                "voice2fa: VOICE2FA_SECRET_KEY is not set; using a random key. Cookies will not "
                "survive a restart nor be shared between workers."
            )
        if not s.public_url:
            logger.warning("voice2fa: VOICE2FA_PUBLIC_URL is not set; webhook URLs follow the request's host")
        self._status_labels = {
            lang: script_json({k.rsplit(".", 1)[1]: v for k, v in table.items() if k.startswith("page.status.")})
            for lang, table in MESSAGES.items()
        }
        p = self.prefix
        self._routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            f"{p}/verify": self._verify_endpoint,
            f"{p}/verify/status": self._status_page_endpoint,
            f"{p}/resend": self._resend_endpoint,
            f"{p}/cancel": self._cancel_endpoint,
            f"{p}/dev/phone": self._dev_phone_endpoint,
            f"{p}/dev/calls": self._dev_calls_endpoint,
        }

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, self._lifespan_send(send) if kind == "lifespan" else send)
            return
        path = route_path(scope) if scope.get("root_path") else scope["path"]
        seen = self._paths.get(path)
        if seen is None:
            seen = self._classify(path)
            if len(self._paths) >= 4096:
                self._paths.clear()  # bounded: any path may come in; a miss costs little
            self._paths[path] = seen
        own, rule = seen
        if own and kind == "http":
            response = await self._own_endpoint(Request(scope, receive))
            await response(scope, receive, send)
            return
        handle = Voice2FAHandle(self, scope)
        scope["voice2fa"] = handle
        try:
            if rule is not None:
                if kind == "websocket":
                    if await handle.identity() is not None and not await handle.is_verified(rule.fresh_within):
                        await send({"type": "websocket.close", "code": 1008, "reason": ""})
                        return
                else:
                    # handle.require(rule.fresh_within) written out, with the freshness test
                    # of handle._passes: this runs on every protected request, and each call
                    # saved here is a measurable share of what the middleware costs.
                    cookies = scope_cookies(scope)
                    conn = handle._conn = Connection(scope, cookies)
                    if self._identify_is_async:
                        identity = _as_identity(await self._identify(conn))  # type: ignore[misc]
                    else:
                        identity = await self._identify_conn(conn)
                    handle._identity = identity
                    handle._identified = True
                    if identity is not None:
                        at = handle._verified_at = self._verified_at(cookies, scope, identity)
                        fresh = rule.fresh_within
                        if at is None or (fresh is not None and self.clock() - at > fresh):
                            denied = await self._challenge(Request(scope), identity)
                            await denied(scope, receive, send)
                            return
            try:
                await self.app(scope, receive, send)
            except VerificationRequired as exc:
                # Raised by the FastAPI dependency before the endpoint answered anything.
                await exc.response(scope, receive, send)
        finally:
            # scope -> handle -> scope is a reference cycle; breaking it lets every request
            # be freed at once instead of by the cyclic garbage collector.
            scope.pop("voice2fa", None)

    def _classify(self, path: str) -> tuple[bool, ProtectedPath | None]:
        """Whether ``path`` is one of the middleware's own, and the rule protecting it."""
        own = path == self.prefix or path.startswith(self.prefix + "/")
        # The app's sign-out (the verify page's "Sign out" posts to it) is never challenged.
        return own, (None if path == self.settings.logout_url else self.rules.match(path))

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return lifespan_send

    async def aclose(self) -> None:
        """Close the caller's HTTP client and the store's connections (done at shutdown)."""
        for resource in (self.caller, self.store):
            closer = getattr(resource, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    logger.exception("voice2fa: closing %s failed", type(resource).__name__)

    # -- who, and verified? ----------------------------------------------------------------

    async def _identify_conn(self, conn: HTTPConnection) -> Identity | None:
        if self._identify_is_async:
            result = await self._identify(conn)  # type: ignore[misc]
        else:
            result = await run_in_threadpool(self._identify, conn)
            if inspect.isawaitable(result):
                result = await result
        return _as_identity(result)

    def _secure(self, conn: HTTPConnection) -> bool:
        if self._always_secure is not None:
            return self._always_secure
        # scope["scheme"], not conn.url: building the URL costs more than the whole check.
        return conn.scope.get("scheme") in _SECURE_SCHEMES

    def _cookie_name(self, conn: HTTPConnection, kind: str) -> str:
        return self._cookie_names[self._secure(conn)][kind]

    def _verified_at(self, cookies: dict[str, str], scope: Scope, identity: Identity) -> float | None:
        """When this user verified: the verified cookie, else a remembered device.

        This runs on every request to a protected route, so it is written for speed: one
        cookie lookup per kind of proof and, for a token seen in the last minute, one dict
        lookup instead of a signature check.
        """
        secure = self._always_secure
        if secure is None:
            secure = scope.get("scheme") in _SECURE_SCHEMES
        now = self.clock()
        for proof in self._proofs:
            token = cookies.get(proof.names[secure])
            if not token:
                continue
            # Positive results only, for a minute: a signed token cannot be forged, so the
            # same token and identity always verify the same way; expiry is checked each time.
            # Each kind has its own cache: a verified token in the remember slot must not hit.
            # An entry is good until the token expires or the minute is over, whichever is first.
            key = (token, identity)
            cached = proof.cache.get(key)
            if cached is not None and now < cached[1]:
                return cached[0]
            signed_at = self.keys.proof_time(proof.kind, identity, token, proof.max_age)
            if signed_at is not None:
                if len(proof.cache) >= 10_000:
                    proof.cache.clear()  # bounded; a miss only costs one signature check
                proof.cache[key] = (signed_at, min(now + 60, signed_at + proof.max_age))
                return signed_at
        return None

    # -- helpers -----------------------------------------------------------------------------

    def _language(self, conn: HTTPConnection) -> str:
        if self.select_language is not None:
            chosen = self.select_language(conn)
            if chosen:
                return normalize_language(chosen, self.settings.default_language)
        return negotiate(conn.headers.get("accept-language"), self.settings.default_language)

    @staticmethod
    def _wants_json(conn: HTTPConnection) -> bool:
        accept = conn.headers.get("accept", "")
        ctype = conn.headers.get("content-type", "")
        return ("application/json" in accept and "text/html" not in accept) or ctype.startswith("application/json")

    def client_address(self, conn: HTTPConnection) -> str:
        """The client's address: the ASGI peer, or ``X-Forwarded-For`` from trusted proxies."""
        peer = conn.client.host if conn.client else "unknown"
        if not self._proxies:
            return peer
        forwarded = ",".join(conn.headers.getlist("x-forwarded-for"))
        # Walk from the nearest hop outwards while each hop is a trusted proxy.
        chain = [peer, *[h.strip() for h in forwarded.split(",") if h.strip()][::-1]]
        for hop in chain:
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return hop[:64]
            if not any(address in net for net in self._proxies):
                return hop
        return chain[-1]

    def _now(self) -> float:
        return self.clock()

    async def _store(self, awaitable: Awaitable[Any]) -> Any:
        """Run a store operation with the store timeout; any failure is a ``StoreError``."""
        try:
            if type(self.store) is MemoryStore:  # never awaits: a cancel scope would only cost
                return await awaitable
            with anyio.fail_after(self.settings.store_timeout):
                return await awaitable
        except StoreError:
            raise
        except TimeoutError as exc:
            raise StoreError("the store timed out") from exc
        except Exception as exc:
            raise StoreError(f"the store failed: {type(exc).__name__}") from exc

    async def _audit(
        self, kind: EventKind, conn: HTTPConnection | None, user_id: str | None, **detail: str | int | float
    ) -> None:
        client = self.client_address(conn) if conn is not None else None
        await emit(self.on_event, AuditEvent(kind, user_id, client, self._now(), detail))

    def _base_url(self, conn: HTTPConnection) -> str:
        """Where the provider reaches us: the public URL, else the address the server is
        bound to (never the ``Host`` header, which the client chooses)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        server = conn.scope.get("server")
        scheme = "https" if conn.scope.get("scheme") in _SECURE_SCHEMES else "http"
        if not server or server[1] is None:
            return f"{scheme}://127.0.0.1"
        host = f"[{server[0]}]" if ":" in server[0] else server[0]
        return f"{scheme}://{host}:{server[1]}"

    def _verify_url(self, next_url: str) -> str:
        return f"{self.prefix}/verify?" + urlencode({"next": next_url})

    def _pending(self, conn: HTTPConnection) -> dict[str, str] | None:
        payload = self.keys.load(
            self.keys.pending, conn.cookies.get(self._cookie_name(conn, "pending")), self.settings.code_ttl
        )
        if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) for k in ("c", "u", "x", "n")):
            return None
        return payload

    def _set_cookie(self, response: Response, conn: HTTPConnection, kind: str, value: str, max_age: int) -> None:
        response.set_cookie(
            self._cookie_name(conn, kind),
            value,
            max_age=max_age,
            path="/",
            secure=self._secure(conn),
            httponly=True,
            samesite="lax",
        )

    def _delete_cookie(self, response: Response, conn: HTTPConnection, kind: str) -> None:
        response.delete_cookie(
            self._cookie_name(conn, kind), path="/", secure=self._secure(conn), httponly=True, samesite="lax"
        )

    def _error(
        self,
        conn: HTTPConnection,
        status: int,
        error: str,
        *,
        language: str | None = None,
        retry_after: float | None = None,
        link: str | None = None,
        **extra: Any,
    ) -> Response:
        language = language or self._language(conn)
        headers = {"retry-after": str(max(1, int(retry_after + 0.999)))} if retry_after else None
        minutes = max(1, int((retry_after or 0) / 60 + 0.999))
        seconds = max(1, int((retry_after or 0) + 0.999))
        text = translate(language, f"error.{error}", minutes=minutes, seconds=seconds)
        if self._wants_json(conn):
            body = {"error": error, "message": text, **extra}
            if retry_after:
                body["retry_after"] = seconds
            return json_response(status, body, headers)
        return self.pages.message(
            status=status, language=language, prefix=self.prefix, error=error, text=text, link=link, headers=headers
        )

    # -- the challenge (protected route, no fresh verification) ------------------------------

    async def _challenge(self, request: Request, identity: Identity) -> Response:
        language = self._language(request)
        query = request.url.query
        next_url = request.url.path + ("?" + query if query else "")
        try:
            return await self._start_challenge(request, identity, next_url, language)
        except StoreError as exc:
            logger.error("voice2fa: store unavailable, failing closed: %s", exc)
            return self._error(request, 503, "store", language=language, retry_after=5)

    async def _start_challenge(self, request: Request, identity: Identity, next_url: str, language: str) -> Response:
        now = self._now()
        user_tag = self.keys.tag("user", identity.user_id)
        pending = self._pending(request)
        if pending is not None and pending["u"] == user_tag:
            live = await self._store(self.store.get(pending["c"]))
            if live is not None and live.user_tag == user_tag:
                return self._to_verify(request, next_url, pending, set_cookie=False)
        locked = await self._locked_for(user_tag, now)
        if locked:
            return self._error(request, 429, "locked", language=language, retry_after=locked)
        phone = check_phone(identity.phone, self.allowed_regions)
        if not phone.ok or phone.e164 is None:
            await self._audit("call_refused", request, identity.user_id, reason=f"phone_{phone.reason}")
            return self._error(request, 403, "phone", language=language)
        wait = await self._store(self.store.take(self._call_buckets(request, user_tag, phone.e164), now))
        if wait:
            await self._audit("call_refused", request, identity.user_id, reason="rate_limited")
            return self._error(request, 429, "rate_limited", language=language, retry_after=wait)
        challenge = Challenge(
            id=new_id(),
            user_tag=user_tag,
            phone=phone.e164,
            code_mac="",
            created_at=now,
            expires_at=now + self.settings.code_ttl,
            language=language,
        )
        await self._store(self.store.create(challenge))
        await self._audit("challenge_created", request, identity.user_id)
        failure = await self._place_call(request, challenge, identity.user_id, first=True)
        if failure is not None:
            await self._store(self.store.delete(challenge.id))
            return failure
        payload = {"c": challenge.id, "u": user_tag, "x": new_id(), "n": next_url}
        return self._to_verify(request, next_url, payload, set_cookie=True)

    def _to_verify(self, request: Request, next_url: str, pending: dict[str, str], *, set_cookie: bool) -> Response:
        verify_url = self._verify_url(next_url)
        response: Response
        if self._wants_json(request):
            response = json_response(
                401,
                {
                    "error": "voice2fa_required",
                    "verify_url": verify_url,
                    "status_url": f"{self.prefix}/verify/status",
                    "resend_url": f"{self.prefix}/resend",
                    "csrf_token": pending["x"],
                },
                {"www-authenticate": 'Voice2FA realm="voice2fa"'},
            )
        else:
            response = RedirectResponse(verify_url, status_code=303, headers={"cache-control": "no-store"})
        if set_cookie:
            self._set_cookie(response, request, "pending", self.keys.pending.dumps(pending), self.settings.code_ttl)
        return response

    def _call_buckets(self, conn: HTTPConnection, user_tag: str, e164: str) -> list[Bucket]:
        s = self.settings
        return [
            Bucket("calls:all", s.calls_per_hour, 3600),
            Bucket("calls:phone:" + self.keys.tag("phone", e164), s.calls_per_phone_per_hour, 3600),
            Bucket("calls:user:" + user_tag, s.calls_per_user_per_hour, 3600),
            Bucket(
                "calls:client:" + self.keys.tag("client", self.client_address(conn)), s.calls_per_client_per_hour, 3600
            ),
        ]

    async def _locked_for(self, user_tag: str, now: float) -> float:
        count, left = await self._store(self.store.peek("fail:" + user_tag, now))
        return left if count >= self.settings.lockout_failures else 0.0

    async def _place_call(
        self, request: Request, challenge: Challenge, user_id: str, *, first: bool
    ) -> Response | None:
        """Install a new code and call; ``None`` when the call was placed."""
        s = self.settings
        now = self._now()
        code = generate_code(s.code_digits)
        nonce = new_id(12)
        granted = await self._store(
            self.store.begin_call(
                challenge.id,
                code_mac=self.keys.code_mac(challenge.id, code),
                code=code,
                call_nonce=nonce,
                now=now,
                cooldown=0 if first else s.resend_cooldown,
                max_calls=s.max_calls_per_challenge,
            )
        )
        del code
        if granted is None:
            return self._error(request, 400, "no_challenge", link=self._pending_next(request))
        if granted > 0:
            await self._audit("call_refused", request, user_id, reason="cooldown")
            return self._error(request, 429, "rate_limited", retry_after=granted)
        token = self.keys.call.dumps([challenge.id, nonce])
        base = self._base_url(request) + self.prefix
        try:
            with anyio.fail_after(s.call_timeout + 1):
                sid = await self.caller.place_call(
                    to=challenge.phone,
                    from_=self.from_number,
                    laml_url=f"{base}/laml/{token}",
                    status_url=f"{base}/status/{token}",
                )
        except Exception as exc:  # any failure of the caller: no call, a clear 502
            status = exc.status if isinstance(exc, CallError) else None
            logger.warning("voice2fa: the call could not be placed (status=%s)", status)
            if not first:  # the code the user already heard keeps working
                await self._store(self.store.rollback_call(challenge.id, nonce, challenge))
            await self._audit("call_failed", request, user_id, provider_status=status or 0)
            link = safe_next(request.url.path) or "/" if first else self._pending_next(request)
            return self._error(request, 502, "call_failed", link=link)
        await self._store(self.store.update_call(challenge.id, nonce, call_sid=str(sid)[:64]))
        await self._audit("call_placed", request, user_id, call_sid=str(sid)[:64])
        return None

    def _pending_next(self, conn: HTTPConnection) -> str:
        pending = self._pending(conn)
        return safe_next(pending["n"]) or "/" if pending else "/"

    # -- the middleware's own endpoints -------------------------------------------------------

    async def _own_endpoint(self, request: Request) -> Response:
        path = route_path(request.scope)
        try:
            endpoint = self._routes.get(path)
            if endpoint is not None:
                return await endpoint(request)
            rest = path[len(self.prefix) + 1 :]
            if rest.startswith("static/") and request.method in ("GET", "HEAD"):
                found = self.pages.static.get(rest[7:])
                if found is None:
                    return text_response(404, "Not Found")
                return Response(
                    found[0],
                    media_type=found[1],
                    headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
                )
            if rest.startswith("laml/") or rest.startswith("status/"):
                return await self._webhook(request, rest)
            return text_response(404, "Not Found")
        except _BadRequest as exc:
            return self._error(request, exc.status, exc.error)
        except StoreError as exc:
            logger.error("voice2fa: store unavailable, failing closed: %s", exc)
            return self._error(request, 503, "store", retry_after=5)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_size
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise _BadRequest(400, "bad_request")
            if int(declared) > limit:
                raise _BadRequest(413, "too_large")
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                raise _BadRequest(413, "too_large")
        return bytes(chunks)

    async def _read_form(self, request: Request) -> dict[str, str]:
        body = await self._read_body(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            text = body.decode("utf-8")
            if ctype == "application/json":
                data = json.loads(text) if text else {}
                if not isinstance(data, dict):
                    raise ValueError("a JSON object is expected")
                return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
            if ctype in ("application/x-www-form-urlencoded", ""):
                return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=50, strict_parsing=False))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _BadRequest(400, "bad_request") from None
        raise _BadRequest(415, "bad_request")

    def _same_site(self, request: Request) -> bool:
        """Refuse cross-site posts (S11): ``Sec-Fetch-Site`` and ``Origin`` must agree."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        allowed = {f"{request.url.scheme}://{request.url.netloc}"}
        if self.settings.public_url:
            p = urlsplit(self.settings.public_url)
            allowed.add(f"{p.scheme}://{p.netloc}")
        return origin in allowed

    async def _form_with_csrf(self, request: Request) -> tuple[dict[str, str], dict[str, str], Identity]:
        """The posted form, the pending state and the user, or a ``_BadRequest``."""
        if not self._same_site(request):
            raise _BadRequest(403, "csrf")
        form = await self._read_form(request)
        pending = self._pending(request)
        token = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
        if pending is None or not isinstance(token, str):
            raise _BadRequest(403, "csrf")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), pending["x"].encode()):
            raise _BadRequest(403, "csrf")
        identity = await self._identify_conn(request)
        if identity is None or not self.keys.tag_matches("user", identity.user_id, pending["u"]):
            raise _BadRequest(403, "csrf")
        return form, pending, identity

    def _invalid(
        self,
        request: Request,
        attempts_left: int,
        language: str,
        pending: dict[str, str] | None,
        ch: Challenge | None,
        next_url: str,
        *,
        dead: bool = False,
    ) -> Response:
        """The one answer for a wrong, expired or unknown code (same status and shape)."""
        message = translate(language, "error.dead" if dead else "error.invalid_code")
        if attempts_left > 0:
            message += " " + translate(language, "error.attempts_left", n=attempts_left)
        if self._wants_json(request):
            return json_response(400, {"error": "invalid_code", "message": message, "attempts_left": attempts_left})
        if pending is not None and ch is not None:
            return self._render_verify(request, pending, ch, next_url, language, status=400, error=message)
        return self.pages.message(
            status=400, language=language, prefix=self.prefix, error="invalid_code", text=message, link=next_url
        )

    async def _verify_endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._verify_page(request)
        if request.method != "POST":
            return text_response(405, "Method Not Allowed")
        language = self._language(request)
        form, pending, identity = await self._form_with_csrf(request)
        next_url = safe_next(form.get("next")) or safe_next(pending["n"]) or "/"
        user_tag = pending["u"]
        now = self._now()
        locked = await self._locked_for(user_tag, now)
        if locked:
            return self._error(request, 429, "locked", language=language, retry_after=locked)
        raw = form.get("code", "")
        code = _SEPARATORS.sub("", raw) if isinstance(raw, str) else ""
        if not code.isascii() or not _CODE_RE.fullmatch(code) or len(code) != self.settings.code_digits:
            current = await self._store(self.store.get(pending["c"]))
            left = self.settings.max_attempts - current.attempts if current else 0
            return self._invalid(request, left, language, pending, current, next_url)
        ch = await self._store(self.store.reserve_attempt(pending["c"], self.settings.max_attempts))
        if ch is None or ch.user_tag != user_tag:
            return self._invalid(request, 0, language, None, None, next_url)
        if ch.code_mac and self.keys.code_matches(ch.id, code, ch.code_mac):
            if await self._store(self.store.consume(ch.id, ch.code_mac)):
                return await self._verified(request, identity, next_url, form)
            return self._invalid(request, 0, language, None, None, next_url)
        count, _left = await self._store(self.store.hit("fail:" + user_tag, self.settings.lockout_window, now))
        left = self.settings.max_attempts - ch.attempts
        await self._audit("failed", request, identity.user_id, attempts_left=left, failures=count)
        if left <= 0:
            await self._store(self.store.delete(ch.id))
        if count >= self.settings.lockout_failures:
            await self._audit("locked", request, identity.user_id, failures=count)
            await self._store(self.store.delete(ch.id))
            return self._error(request, 429, "locked", language=language, retry_after=_left)
        return self._invalid(
            request, left, language, pending if left > 0 else None, ch if left > 0 else None, next_url, dead=left <= 0
        )

    async def _verified(self, request: Request, identity: Identity, next_url: str, form: dict[str, str]) -> Response:
        user_tag = self.keys.tag("user", identity.user_id)
        await self._store(self.store.clear("fail:" + user_tag))
        await self._audit("verified", request, identity.user_id)
        response: Response
        if self._wants_json(request):
            response = json_response(200, {"verified": True, "next": next_url})
        else:
            response = RedirectResponse(next_url, status_code=303, headers={"cache-control": "no-store"})
        proof = self.keys.sign_proof("verified", identity)
        self._set_cookie(response, request, "verified", proof, self.settings.verified_max_age)
        if self.settings.remember_days > 0 and form.get("remember") in ("1", "on", "true"):
            remember = self.keys.sign_proof("remember", identity)
            self._set_cookie(response, request, "remember", remember, self.settings.remember_days * 86400)
        self._delete_cookie(response, request, "pending")
        return response

    async def _verify_page(self, request: Request) -> Response:
        language = self._language(request)
        pending = self._pending(request)
        requested = safe_next(request.query_params.get("next"))
        next_url = requested or (safe_next(pending["n"]) if pending else None) or "/"
        if pending is None:
            return self._error(request, 400, "no_challenge", language=language, link=next_url)
        identity = await self._identify_conn(request)
        ch = await self._store(self.store.get(pending["c"]))
        if identity is None or ch is None or not self.keys.tag_matches("user", identity.user_id, ch.user_tag):
            return self._error(request, 400, "no_challenge", language=language, link=next_url)
        notice = translate(language, "page.sent") if request.query_params.get("sent") == "1" else None
        return self._render_verify(request, pending, ch, next_url, language, status=200, notice=notice)

    def _resend_in(self, ch: Challenge) -> int:
        if ch.calls >= self.settings.max_calls_per_challenge:
            return max(0, int(ch.expires_at - self._now()))
        return (
            max(0, int(ch.last_call_at + self.settings.resend_cooldown - self._now() + 0.999)) if ch.last_call_at else 0
        )

    def _render_verify(
        self,
        request: Request,
        pending: dict[str, str],
        ch: Challenge,
        next_url: str,
        language: str,
        *,
        status: int,
        error: str | None = None,
        notice: str | None = None,
    ) -> Response:
        call_status = ch.call_status or "queued"
        return self.pages.html(
            "voice2fa/verify.html",
            status=status,
            language=language,
            prefix=self.prefix,
            masked_phone=mask(ch.phone),
            csrf_token=pending["x"],
            next_url=next_url,
            digits=self.settings.code_digits,
            error=error,
            notice=notice,
            status_text=translate(language, f"page.status.{call_status}"),
            status_labels=self._status_labels.get(language, self._status_labels["en"]),
            resend_in=self._resend_in(ch),
            remember_days=self.settings.remember_days,
            logout_url=self.settings.logout_url,
        )

    async def _status_page_endpoint(self, request: Request) -> Response:
        if request.method != "GET":
            return text_response(405, "Method Not Allowed")
        pending = self._pending(request)
        ch = await self._store(self.store.get(pending["c"])) if pending else None
        if ch is None or pending is None or ch.user_tag != pending["u"]:
            return json_response(404, {"error": "no_challenge"})
        return json_response(
            200,
            {
                "call_status": ch.call_status or "queued",
                "attempts_left": max(0, self.settings.max_attempts - ch.attempts),
                "resend_in": self._resend_in(ch),
                "calls_left": max(0, self.settings.max_calls_per_challenge - ch.calls),
                "expires_in": max(0, int(ch.expires_at - self._now())),
            },
        )

    async def _resend_endpoint(self, request: Request) -> Response:
        if request.method != "POST":
            return text_response(405, "Method Not Allowed")
        language = self._language(request)
        form, pending, identity = await self._form_with_csrf(request)
        next_url = safe_next(form.get("next")) or safe_next(pending["n"]) or "/"
        now = self._now()
        ch = await self._store(self.store.get(pending["c"]))
        if ch is None or ch.user_tag != pending["u"]:
            return self._error(request, 400, "no_challenge", language=language, link=next_url)
        locked = await self._locked_for(ch.user_tag, now)
        if locked:
            return self._error(request, 429, "locked", language=language, retry_after=locked)
        wait = self._resend_in(ch)
        if wait > 0:
            await self._audit("call_refused", request, identity.user_id, reason="cooldown")
            return self._error(request, 429, "rate_limited", language=language, retry_after=wait)
        wait_f = await self._store(self.store.take(self._call_buckets(request, ch.user_tag, ch.phone), now))
        if wait_f:
            await self._audit("call_refused", request, identity.user_id, reason="rate_limited")
            return self._error(request, 429, "rate_limited", language=language, retry_after=wait_f)
        failure = await self._place_call(request, ch, identity.user_id, first=False)
        if failure is not None:
            return failure
        if self._wants_json(request):
            return json_response(202, {"status": "calling"})
        return RedirectResponse(
            self._verify_url(next_url) + "&sent=1", status_code=303, headers={"cache-control": "no-store"}
        )

    async def _cancel_endpoint(self, request: Request) -> Response:
        if request.method != "POST":
            return text_response(405, "Method Not Allowed")
        _form, pending, _identity = await self._form_with_csrf(request)
        await self._store(self.store.delete(pending["c"]))
        response: Response = RedirectResponse("/", status_code=303, headers={"cache-control": "no-store"})
        if self._wants_json(request):
            response = json_response(200, {"canceled": True})
        self._delete_cookie(response, request, "pending")
        return response

    # -- dev phone (console caller only) -------------------------------------------------------

    def _dev_allowed(self, request: Request) -> bool:
        """The dev phone shows codes: loopback clients only, never through a proxy."""
        proxied = any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip"))
        return (
            self.dev_pages
            and not proxied
            and isinstance(self.caller, ConsoleCaller)
            and is_loopback_host(request.client.host if request.client else None)
        )

    async def _dev_phone_endpoint(self, request: Request) -> Response:
        if not self._dev_allowed(request) or request.method != "GET":
            return text_response(404, "Not Found")
        assert isinstance(self.caller, ConsoleCaller)
        return self.pages.html(
            "voice2fa/devphone.html", status=200, language="en", prefix=self.prefix, calls=list(self.caller.calls)[::-1]
        )

    async def _dev_calls_endpoint(self, request: Request) -> Response:
        if not self._dev_allowed(request) or request.method != "GET":
            return text_response(404, "Not Found")
        assert isinstance(self.caller, ConsoleCaller)
        calls = [
            {"sid": c.sid, "to": c.to, "says": c.says, "statuses": c.statuses, "done": c.done, "error": c.error}
            for c in self.caller.calls
        ]
        return json_response(200, {"calls": calls})

    # -- provider webhooks (S7) ----------------------------------------------------------------

    async def _webhook(self, request: Request, rest: str) -> Response:
        if request.method != "POST":
            return text_response(405, "Method Not Allowed")
        body = await self._read_body(request)
        try:
            text = body.decode("utf-8")
            params = parse_qsl(text, keep_blank_values=True, max_num_fields=100)
        except (UnicodeDecodeError, ValueError):
            return text_response(400, "Bad Request")
        query = request.url.query
        url = self._base_url(request) + request.url.path + ("?" + query if query else "")
        signature = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), None)
        if not is_valid_signature(self.settings.webhook_key, url, params, text, signature):
            logger.warning("voice2fa: refused a webhook with a missing or invalid signature")
            return text_response(403, "Forbidden: invalid signature")
        form = dict(params)
        kind, _, tail = rest.partition("/")
        token, _, action = tail.partition("/")
        loaded = self.keys.load(self.keys.call, token, self.settings.code_ttl + 3600, max_length=512)
        if not (isinstance(loaded, list) and len(loaded) == 2 and all(isinstance(x, str) for x in loaded)):
            return (
                self._laml_response(self.laml.goodbye(language="en", expired=True))
                if kind == "laml"
                else text_response(404, "Not Found")
            )
        challenge_id, nonce = loaded
        call_sid = form.get("CallSid", "")[:64]
        if kind == "status" and not action:
            return await self._status_callback(request, challenge_id, nonce, call_sid, form)
        if kind == "laml" and action in ("", "code", "repeat"):
            return await self._laml(self._base_url(request), challenge_id, nonce, call_sid, action, form)
        return text_response(404, "Not Found")

    @staticmethod
    def _laml_response(document: str, status: int = 200) -> Response:
        return Response(
            document, status_code=status, media_type="application/xml", headers={"cache-control": "no-store"}
        )

    async def _laml(
        self, base_url: str, challenge_id: str, nonce: str, call_sid: str, action: str, form: dict[str, str]
    ) -> Response:
        status = "in-progress" if action == "" else None
        ch = await self._store(self.store.update_call(challenge_id, nonce, call_sid=call_sid or None, status=status))
        if ch is None or not ch.code or self._now() >= ch.expires_at:
            return self._laml_response(self.laml.goodbye(language=ch.language if ch else "en", expired=True))
        if not call_sid or ch.call_sid != call_sid:
            return text_response(403, "Forbidden: not this call")
        base = base_url + self.prefix
        token = self.keys.call.dumps([challenge_id, nonce])
        if action == "" and self.settings.voicemail_guard:
            return self._laml_response(self.laml.answer(action=f"{base}/laml/{token}/code", language=ch.language))
        if action == "repeat" and form.get("Digits") != "1":
            return self._laml_response(self.laml.goodbye(language=ch.language))
        return self._laml_response(
            self.laml.code(code=ch.code, action=f"{base}/laml/{token}/repeat", language=ch.language)
        )

    async def _status_callback(
        self, request: Request, challenge_id: str, nonce: str, call_sid: str, form: dict[str, str]
    ) -> Response:
        status = form.get("CallStatus", "")
        if status not in _CALL_STATUSES:
            return text_response(400, "Bad Request: unknown CallStatus")
        ch = await self._store(self.store.get(challenge_id))
        if ch is not None and ch.call_sid and call_sid and ch.call_sid != call_sid:
            return text_response(403, "Forbidden: not this call")
        final = status in FINAL_STATUSES
        updated = await self._store(
            self.store.update_call(challenge_id, nonce, call_sid=call_sid or None, status=status, drop_code=final)
        )
        if updated is not None:
            await self._audit("call_status", None, None, status=status, call_sid=call_sid)
        return Response(status_code=204, headers={"cache-control": "no-store"})

"""The middleware's runtime: the parts every handler works with, built once per process.

``Runtime`` holds the settings, keys, cookies, store, caller and pages (one per middleware,
shared by every request; what belongs to one request is the ``Voice2FAHandle``), and answers
the small questions every handler asks: who is this (``identify``), which language, JSON or
a page, which client address, where does the provider reach us, what is in the pending
cookie. ``error`` turns an error code into the page or JSON body every endpoint answers with.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response

from .._core.audit import AuditEvent, AuditHook, EventKind, emit
from .._core.crypto import Keyring
from .._core.deadline import within
from .._core.rules import Identify, Identity, as_identity, is_async_callable
from .._core.telemetry import Telemetry
from .._core.urls import safe_next, safe_root
from .._errors import ConfigurationError, StoreError
from .._i18n.catalogs import Translations
from .._settings import Voice2FASettings
from .._stores.base import Store
from .._stores.memory import MemoryStore
from .._telephony.callers import Caller, ConsoleCaller, PlacesCalls, SignalWireCaller, as_caller
from .._telephony.laml import LamlBuilder
from .._telephony.lookup import LineTypeLookup
from .._telephony.numbers import region_of
from .._web.cookies import CHALLENGE_HEADER, SECURE_SCHEMES, Cookies
from .._web.pages import Pages, SignoutFields, json_response
from .devices import RememberedDevices
from .linetype import LineTypes
from .pending import Pending, Resubmission

logger = logging.getLogger("voice2fa")

SelectLanguage = Callable[[HTTPConnection], "str | None"]

# Errors a recovery code is the way out of: the call cannot be placed or cannot reach the
# phone (not a lockout: a recovery code is counted against it like any code).
RECOVERABLE = frozenset({"call_failed", "provider_unavailable", "phone", "rate_limited"})


class Misordered(ConfigurationError):
    """``identify`` failed because a middleware it needs runs inside ours; the message says how
    to order them. Raised at run time, as the order shows only when a request comes."""


def default_store(s: Voice2FASettings, clock: Callable[[], float]) -> Store:
    if s.redis_url:
        from .._stores.redis import RedisStore

        try:
            return RedisStore(s.redis_url, timeout=s.store_timeout, max_connections=s.redis_max_connections)
        except ValueError as exc:  # a URL redis-py cannot use: say which setting, not a traceback of its own
            raise ConfigurationError(f"voice2fa: VOICE2FA_REDIS_URL is not a usable Redis URL: {exc}") from None
    return MemoryStore(max_challenges=s.memory_max_challenges, clock=clock)


def default_caller(s: Voice2FASettings, on_state_change: Callable[[str], None] | None = None) -> Caller:
    if s.uses_signalwire:
        assert s.space_url and s.signalwire_project and s.signalwire_token
        return SignalWireCaller(
            space=s.space_url,
            project=s.signalwire_project,
            token=s.signalwire_token,
            timeout=s.call_timeout,
            # Probe a provider back after a short outage soon: 5 s, doubling up to 30 s.
            first_cooldown=5.0,
            on_state_change=on_state_change,
            machine_detection=s.answering_machine_detection,
        )
    logger.warning(
        "voice2fa: no SignalWire credentials, using the CONSOLE CALLER: calls are "
        "played locally and codes shown on the terminal. NOT FOR PRODUCTION."
    )
    return ConsoleCaller(signing_key=s.webhook_key)


RequestKind = Literal["page", "api", "background"]
ClassifyRequest = Callable[[HTTPConnection], "RequestKind | None"]


def default_request_kind(conn: HTTPConnection) -> RequestKind:
    """Tell a page visit from an API client and from a browser's background request, by what
    browsers and clients send (S30), in this order:

    1. ``Sec-Fetch-Mode: navigate``: a page (a browser navigating, whatever else it sends);
    2. any other ``Sec-Fetch-Mode`` (``cors``, ``same-origin``, ``no-cors``), or
       ``X-Requested-With``: a background request of a page's script (``fetch``, XHR);
    3. ``Accept`` asking for JSON (and not HTML), a JSON body, or an ``Authorization``
       header other than HTTP Basic (a bearer token): an API client;
    4. anything else (a browser that sends no fetch metadata, curl): a page.

    Pages get the verify page (a 303); API clients and background requests get a 401 with
    JSON. A background request never places a call by itself: the page it came from leads
    the user to verify.
    """
    headers = conn.headers
    mode = headers.get("sec-fetch-mode")
    if mode == "navigate":
        return "page"
    if mode is not None or "x-requested-with" in headers:
        return "background"
    accept = headers.get("accept", "")
    if ("application/json" in accept and "text/html" not in accept) or headers.get("content-type", "").startswith(
        "application/json"
    ):
        return "api"
    authorization = headers.get("authorization")
    if authorization and not authorization[:6].lower().startswith("basic"):
        return "api"
    return "page"


class Runtime:
    """The middleware's shared parts and the questions every handler asks."""

    def __init__(
        self,
        *,
        identify: Identify,
        settings: Voice2FASettings,
        store: Store | None,
        caller: PlacesCalls | None,
        on_event: AuditHook | None,
        select_language: SelectLanguage | None,
        classify_request: ClassifyRequest | None = None,
        signout_fields: SignoutFields | None = None,
        template_dirs: Sequence[str | Path],
        clock: Callable[[], float] = time.time,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        translations: Translations | str | Path | Sequence[str | Path] = (),
    ) -> None:
        self.settings = s = settings
        self.translations = tr = translations if isinstance(translations, Translations) else Translations(translations)
        self.telemetry = Telemetry(meter_provider=meter_provider, tracer_provider=tracer_provider)
        self._tasks: set[asyncio.Task[None]] = set()
        self.identify = identify
        self.identify_is_async = is_async_callable(identify)
        self.keys = Keyring(s.secret_keys)
        self.clock = clock
        self.cookies = Cookies(s, self.keys, clock)
        self.on_event = on_event
        self.select_language = select_language
        self.classify_request = classify_request
        self.prefix = s.prefix
        self.pages = Pages(
            template_dirs,
            tr,
            help_url=s.help_url,
            logout_url=s.logout_url,
            logout_method=s.logout_method,
            signout_fields=signout_fields,
        )
        self.laml = LamlBuilder(voice=s.voice, app_name=s.app_name, translations=tr)
        self.allowed_regions: frozenset[str] | None = (
            frozenset(r.upper() for r in s.allowed_countries)
            if s.allowed_countries is not None
            else (frozenset({r, *s.from_numbers}) if (r := region_of(s.from_number)) else None)
        )
        self.from_number = s.from_number or "+10000000000"
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in s.trusted_proxies]
        self._warned_forwarded = False
        self._warned_order = False
        self.store: Store = store if store is not None else default_store(s, clock)
        # The store's capabilities (Store's docstring); a store of an earlier release that
        # declares none is taken as shared and I/O-bound, the safe assumptions.
        self._deadline_free = bool(getattr(self.store, "deadline_free", False))
        self._native_deadline = bool(getattr(self.store, "native_deadline", False))
        if s.ephemeral_secret and getattr(self.store, "shared", True):
            raise ConfigurationError(
                "a store shared between processes (RedisStore) needs VOICE2FA_SECRET_KEY: with a "
                "random key in each process, a challenge made by one cannot be verified by another"
            )
        self.caller: Caller = as_caller(caller) if caller is not None else default_caller(s, self.circuit_changed)
        self.dev_pages = s.dev_pages if s.dev_pages is not None else self.caller.calls_nobody
        # Set by the middleware when the app gives a RecoveryCodeStore (and recovery_codes > 0):
        # the error pages of a call that cannot help then offer a recovery code.
        self.recovery_enabled = False
        # Remembered devices support forgot: read only for requests a remember cookie alone may prove.
        self.devices: RememberedDevices | None = None
        if self.cookies.remember_enabled:
            names = self.cookies.names.values()
            self.devices = RememberedDevices(
                self.store,
                self.keys,
                s.remember_days,
                clock,
                self.run,
                remember_names=frozenset(n["remember"] for n in names),
                verified_names=frozenset(n["verified"] for n in names),
            )
            self.cookies.not_before = self.devices.not_before
        # VoIP lines the number ranges do not show (lookup_line_type): looked up before a first call.
        self.line_types: LineTypes | None = None
        if s.lookup_line_type and not s.allow_voip and s.uses_signalwire:
            assert s.space_url and s.signalwire_project and s.signalwire_token
            lookup = LineTypeLookup(
                space=s.space_url, project=s.signalwire_project, token=s.signalwire_token, timeout=s.call_timeout
            )
            self.line_types = LineTypes(s, self.store, self.keys, clock, self.run, lookup)
        # Call sid -> user tag of the calls a development caller played (the dev phone shows
        # each user their own calls only); bounded like the caller's own history.
        self._dev_calls: dict[str, str] = {}
        if s.ephemeral_secret:
            logger.warning(
                "voice2fa: VOICE2FA_SECRET_KEY is not set; using a random key. Cookies will not "
                "survive a restart nor be shared between workers."
            )
        if not s.public_url:
            logger.warning("voice2fa: VOICE2FA_PUBLIC_URL is not set; webhook URLs follow the request's host")

    # -- who, in which language, from where ----------------------------------------------------

    async def identify_conn(self, conn: HTTPConnection) -> Identity | None:
        """The app's ``identify`` (sync ones in a worker thread), as an ``Identity``."""
        try:
            if self.identify_is_async:
                result = await self.identify(conn)  # type: ignore[misc]
            else:
                result = await run_in_threadpool(self.identify, conn)
                if inspect.isawaitable(result):
                    result = await result
        except AssertionError as exc:
            problem = self.misordered(exc)
            if problem is None:
                raise
            raise problem from exc
        return as_identity(result)

    def misordered(self, exc: BaseException) -> Misordered | None:
        """The error that names the fix when ``identify`` failed on a middleware placed after
        ours (Starlette says "SessionMiddleware must be installed to access request.session"),
        else ``None``. Takes the ``AssertionError`` itself or the ``Misordered`` already made from
        it (a sync ``identify`` runs through ``identify_conn``), so every caller answers alike."""
        if isinstance(exc, Misordered):
            return exc
        text = str(exc)
        if not isinstance(exc, AssertionError) or "must be installed" not in text:
            return None
        needed = text.split(" must be installed")[0]
        message = (
            f"voice2fa: identify() needs {needed} to run before Voice2FAMiddleware ({text}). "
            f"Put {needed} outside it: earlier in middleware=[...], or added after it with "
            "app.add_middleware(...), since each add_middleware wraps the ones added before."
        )
        if not self._warned_order:
            self._warned_order = True
            logger.error("%s", message)
        return Misordered(message)

    @staticmethod
    def misorder_response(problem: Misordered) -> Response:
        """The one answer to a misordered middleware, wherever it is found: a 500 naming the fix
        (the path rules, the decorator, the FastAPI dependency, the middleware's own pages)."""
        return PlainTextResponse(str(problem), status_code=500)

    def language(self, conn: HTTPConnection) -> str:
        if self.select_language is not None:
            chosen = self.select_language(conn)
            if chosen:
                return self.translations.normalize_language(chosen, self.settings.default_language)
        return self.translations.negotiate(conn.headers.get("accept-language"), self.settings.default_language)

    def request_kind(self, conn: HTTPConnection) -> RequestKind:
        """What kind of request this is (``classify_request``, else ``default_request_kind``):
        a page a browser navigated to, an API client's request, or a browser's background
        request (a script's ``fetch`` or XHR)."""
        if self.classify_request is not None:
            chosen = self.classify_request(conn)
            if chosen is not None:
                return chosen
        return default_request_kind(conn)

    def wants_json(self, conn: HTTPConnection) -> bool:
        """Answer in JSON (anything but a page a browser navigated to)."""
        return self.request_kind(conn) != "page"

    def client_address(self, conn: HTTPConnection) -> str:
        """The client's address: the ASGI peer, or ``X-Forwarded-For`` from trusted proxies."""
        peer = conn.client.host if conn.client else "unknown"
        if not self._proxies:
            if not self._warned_forwarded and "x-forwarded-for" in conn.headers:
                self._warned_forwarded = True
                logger.warning(
                    "voice2fa: requests carry X-Forwarded-For but trusted_proxies is empty. If the "
                    "server rewrites client addresses from it (uvicorn --proxy-headers, on by default "
                    "for 127.0.0.1), per-client call budgets count whatever that header says; set "
                    "trusted_proxies to your proxy's address and run uvicorn with --no-proxy-headers."
                )
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

    def base_url(self, conn: HTTPConnection) -> str:
        """Where the provider reaches us: the public URL, else the address the server is
        bound to (never the ``Host`` header, which the client chooses)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        server = conn.scope.get("server")
        scheme = "https" if conn.scope.get("scheme") in SECURE_SCHEMES else "http"
        if not server or server[1] is None:
            return f"{scheme}://127.0.0.1"
        host = f"[{server[0]}]" if ":" in server[0] else server[0]
        return f"{scheme}://{host}:{server[1]}"

    # -- store, audit ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    async def run(self, awaitable: Awaitable[Any]) -> Any:
        """Run a store operation with the store timeout; any failure is a ``StoreError``."""
        try:
            if self._deadline_free:  # never awaits: a cancel scope would only cost
                return await awaitable
            return await within(self.settings.store_timeout, awaitable, native=self._native_deadline)
        except StoreError:
            self.telemetry.add("voice2fa.store.errors")
            raise
        except TimeoutError as exc:
            self.telemetry.add("voice2fa.store.errors")
            raise StoreError("the store timed out") from exc
        except Exception as exc:
            self.telemetry.add("voice2fa.store.errors")
            raise StoreError(f"the store failed: {type(exc).__name__}") from exc

    async def audit(
        self, kind: EventKind, conn: HTTPConnection | None, user_id: str | None, **detail: str | int | float
    ) -> None:
        client = self.client_address(conn) if conn is not None else None
        event = AuditEvent(kind, user_id, client, self.now(), detail)
        self.telemetry.on_event(event)
        await emit(self.on_event, event)

    def circuit_changed(self, state: str) -> None:
        """The default caller's circuit breaker changed state: an audit event and a metric."""
        event = AuditEvent("provider_circuit", None, None, self.now(), {"state": state})
        self.telemetry.on_event(event)
        try:
            task = asyncio.get_running_loop().create_task(emit(self.on_event, event))
        except RuntimeError:  # pragma: no cover - the breaker changes only while calling
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the pending challenge ----------------------------------------------------------------

    def mounted(self, conn: HTTPConnection) -> str:
        """Where our endpoints are, as the browser and the provider see them: the app's root
        path (a ``Mount``'s prefix, uvicorn ``--root-path``) and our prefix (S25). The root
        path is made plain (``safe_root``, S27): under a path parameter the URL chooses it."""
        return safe_root(conn.scope.get("root_path", "")) + self.prefix

    def app_url(self, conn: HTTPConnection, path: str) -> str:
        """A path of the app (such as ``logout_url``), as the browser sees it."""
        root = safe_root(conn.scope.get("root_path", ""))
        return root + path if root and path.startswith("/") else path

    def verify_url(self, conn: HTTPConnection, next_url: str) -> str:
        """The verify page, coming back to ``next_url`` after."""
        return f"{self.mounted(conn)}/verify?" + urlencode({"next": next_url})

    def phone_url(self, conn: HTTPConnection, next_url: str) -> str:
        """The phone page (add or change the number), coming back to ``next_url`` after."""
        return f"{self.mounted(conn)}/phone?" + urlencode({"next": next_url})

    def recovery_use_url(self, conn: HTTPConnection, next_url: str) -> str:
        """The page where a recovery code is typed, coming back to ``next_url`` after."""
        return f"{self.mounted(conn)}/recovery/use?" + urlencode({"next": next_url})

    def pending(self, conn: HTTPConnection) -> Pending | None:
        """The challenge in progress in this browser (the signed pending cookie), or of an API
        client that keeps no cookies (the same value in the ``X-Voice2FA-Challenge`` header),
        if good."""
        token = conn.cookies.get(self.cookies.name(conn, "pending"))
        if token is None:
            token = conn.headers.get(CHALLENGE_HEADER)
        return Pending.loads(self.keys, token, self.settings.code_ttl)

    def resubmission(self, conn: HTTPConnection, identity: Identity) -> Resubmission | None:
        """The form this user submitted while unverified, kept to be offered again, if any."""
        token = conn.cookies.get(self.cookies.name(conn, "resubmit"))
        if token is None:
            return None
        kept = Resubmission.loads(self.keys, token, self.settings.code_ttl)
        if kept is None or not self.keys.tag_matches("user", identity.user_id, kept.user_tag):
            return None
        return kept

    def pending_in_header(self, conn: HTTPConnection) -> bool:
        """Whether the challenge in progress came in the header, not in a cookie: then it is
        no ambient credential a cross-site page could make the browser send, and it proves
        itself what the CSRF token proves for a form (S11)."""
        return conn.cookies.get(self.cookies.name(conn, "pending")) is None and CHALLENGE_HEADER in conn.headers

    def pending_next(self, conn: HTTPConnection) -> str:
        pending = self.pending(conn)
        return safe_next(pending.next_url) or "/" if pending else "/"

    # -- the development caller's calls -----------------------------------------------------------

    def note_dev_call(self, sid: str, user_tag: str) -> None:
        """Remember whose call a development caller placed (the dev phone filters by it)."""
        if len(self._dev_calls) >= 1024:
            self._dev_calls.pop(next(iter(self._dev_calls)))
        self._dev_calls[sid] = user_tag

    def dev_call_owner(self, sid: str) -> str | None:
        return self._dev_calls.get(sid)

    # -- errors -------------------------------------------------------------------------------

    def error(
        self,
        conn: HTTPConnection,
        status: int,
        error: str,
        *,
        language: str | None = None,
        retry_after: float | None = None,
        link: str | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> Response:
        """The page (or JSON body, for API clients) of an error code: what happened, when it
        can be retried (a countdown), and the ways forward (``link``: try again)."""
        language = language or self.language(conn)
        headers = {"retry-after": str(max(1, int(retry_after + 0.999)))} if retry_after else None
        seconds = max(1, int((retry_after or 0) + 0.999))
        tr = self.translations
        key = f"error.{error}_{reason}" if error == "phone" and reason in ("country", "voip") else f"error.{error}"
        duration = tr.format_duration(seconds, language)
        text = tr.translate(language, key, duration=duration)
        if retry_after and "{duration}" not in tr.gettext(language, key):  # say when, always
            text += " " + tr.translate(language, "error.retry", duration=duration)
        recovery_url = None
        if self.recovery_enabled and error in RECOVERABLE:
            recovery_url = self.recovery_use_url(conn, safe_next(link) or "/")
        if self.wants_json(conn):
            body = {"error": error, "message": text, **extra}
            if retry_after:
                body["retry_after"] = seconds
            if recovery_url:
                body["recovery_url"] = recovery_url
            return json_response(status, body, headers)
        return self.pages.message(
            status=status,
            language=language,
            prefix=self.mounted(conn),
            request=conn,
            error=error,
            text=text,
            link=link,
            wait=seconds if retry_after else 0,
            headers=headers,
            recovery_url=recovery_url,
        )

    async def aclose(self) -> None:
        """Close the caller's HTTP client and the store's connections (done at shutdown)."""
        for resource in (self.caller, self.store, self.line_types):
            closer = getattr(resource, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    logger.exception("voice2fa: closing %s failed", type(resource).__name__)

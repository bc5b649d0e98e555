"""``Voice2FAMiddleware``: a pure ASGI middleware that adds a voice-call second factor.

This module only wires the parts together and runs the hot path: for each request, its own
endpoints (``_endpoints``), or a decision by the path rules (``_rules``) and the request's
handle (``_handle``), which starts a challenge (``_challenge``) when the user must verify.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._core.audit import AuditHook
from ._core.notify import Notifier, NotifyHook
from ._core.rules import Identify, PathRules, ProtectedPath, route_path
from ._core.urls import safe_root
from ._endpoints.router import OwnEndpoints
from ._errors import ConfigurationError, Voice2FAError
from ._flow.challenge import Challenger, phoneless_mode
from ._flow.enrolment import Enrolment, PhoneConfirmed
from ._flow.recovery import RecoveryCodes
from ._flow.runtime import ClassifyRequest, Misordered, Runtime
from ._handle import Voice2FAHandle
from ._i18n.catalogs import Translations
from ._protection import VerificationRequired
from ._settings import Voice2FASettings
from ._standards import Row, standards
from ._stores.base import Store
from ._stores.recovery_codes import RecoveryCodeStore
from ._support import Support
from ._telephony.callers import Caller, PlacesCalls
from ._web.cookies import accepts_html, no_store
from ._web.pages import SignoutFields

logger = logging.getLogger("voice2fa")

_APP, _OWN, _SIGN_OUT = 0, 1, 2


class Voice2FAMiddleware:
    """Adds a second factor by voice call to a Starlette or FastAPI app.

    ``identify`` tells who is signed in: ``request -> (user_id, phone) | None``, sync or
    async (sync ones run in a worker thread). ``protect`` lists path patterns (or
    ``ProtectedPath`` with step-up freshness); ``@require_voice_2fa`` and
    ``Depends(VoiceTwoFactor())`` protect single routes. Everything else is in
    ``settings`` (default: ``Voice2FASettings.from_env()``). With ``opentelemetry-api``
    installed, metrics and spans go to the global providers, or to ``meter_provider`` and
    ``tracer_provider``. ``translations``: directories of the app's own catalogs (or a
    ``Translations``), merged over ours: more languages, or other words for any message.
    ``on_phone_confirmed(user_id, e164)`` (sync or async) saves a number the user confirmed
    with a call on the phone page (``{prefix}/phone``), which exists only when it is given.
    ``classify_request(request)`` overrides how a request is told apart: ``"page"`` (a
    browser navigating: the verify page), ``"api"`` (an API client: a call and a 401 with
    JSON) or ``"background"`` (a page's script: a 401 with JSON, no call); ``None`` leaves
    it to the default rules (``Sec-Fetch-Mode``, ``X-Requested-With``, ``Accept``,
    ``Authorization``). ``signout_fields(request)`` gives hidden fields for the Sign out form
    on our pages, such as the app's own CSRF token.
    ``recovery_codes``: the app's ``RecoveryCodeStore`` (``MemoryRecoveryCodes`` for a demo);
    with it, users create one-time recovery codes at ``{prefix}/recovery`` and may type one
    instead of a call's code. ``on_notify(user_id, kind, detail)`` (sync or async) tells the
    user about changes and attacks (``_core.notify``: phone changed, codes created or used,
    lockout, new remembered device), in the background.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Identify,
        protect: Iterable[str | ProtectedPath] = (),
        settings: Voice2FASettings | None = None,
        store: Store | None = None,
        caller: PlacesCalls | None = None,
        on_event: AuditHook | None = None,
        select_language: Callable[[HTTPConnection], str | None] | None = None,
        template_dirs: Sequence[str | Path] = (),
        clock: Callable[[], float] = time.time,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        translations: Translations | str | Path | Sequence[str | Path] = (),
        on_phone_confirmed: PhoneConfirmed | None = None,
        classify_request: ClassifyRequest | None = None,
        signout_fields: SignoutFields | None = None,
        recovery_codes: RecoveryCodeStore | None = None,
        on_notify: NotifyHook | None = None,
    ) -> None:
        self.app = app
        try:
            self.settings = s = settings if settings is not None else Voice2FASettings.from_env()
            self.rules = PathRules(protect)
            phoneless = phoneless_mode(s, enrolment_enabled=on_phone_confirmed is not None)
            if phoneless == "enrol" and on_phone_confirmed is None:
                raise ConfigurationError("phoneless='enrol' needs on_phone_confirmed, the hook that saves a number")
            # Notifications are mapped from the audit events, in one place (_core.notify).
            self.notifier = Notifier(on_notify, on_event) if on_notify is not None else None
            self.ctx = Runtime(
                identify=identify,
                settings=s,
                store=store,
                caller=caller,
                on_event=self.notifier or on_event,
                select_language=select_language,
                classify_request=classify_request,
                signout_fields=signout_fields,
                template_dirs=template_dirs,
                clock=clock,
                meter_provider=meter_provider,
                tracer_provider=tracer_provider,
                translations=translations,
            )
        except (Voice2FAError, ValueError, TypeError) as exc:
            # Inside Starlette the middleware is built on the first call, the lifespan's, and an
            # exception there would make uvicorn and hypercorn (lifespan "auto") say "lifespan
            # unsupported", start anyway, and answer 500 to everything. Failing the lifespan
            # startup instead makes them refuse to start, with this message.
            self._failure = f"{type(exc).__name__}: {exc}"
            logger.error("voice2fa: the middleware cannot start: %s", self._failure)
            self.__class__ = _NotStarted
            return
        self.store: Store = self.ctx.store
        self.caller: Caller = self.ctx.caller
        enrolling = on_phone_confirmed is not None
        self._challenger = Challenger(self.ctx, phoneless=phoneless, enrolment_enabled=enrolling)
        if phoneless == "allow":
            logger.warning(
                "voice2fa: phoneless='allow': signed-in users without a phone pass protected routes "
                "with no second factor"
            )
        enrolment = Enrolment(self._challenger, on_phone_confirmed) if on_phone_confirmed is not None else None
        recovery = RecoveryCodes(self.ctx, recovery_codes) if recovery_codes is not None and s.recovery_codes else None
        self.ctx.recovery_enabled = recovery is not None
        self._own = OwnEndpoints(self._challenger, enrolment, recovery)
        self._prefix = s.prefix
        self._no_store = s.protected_no_store  # "html", "always" or "never"
        # Path -> (whose: _APP, _OWN or _SIGN_OUT, rule): what _classify says, for the paths seen lately.
        self._paths: dict[str, tuple[int, ProtectedPath | None]] = {}

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
        whose, rule = seen
        if whose and kind == "http":
            if whose == _OWN:
                await self._own(scope, receive, send)
            else:
                signing_out = scope["method"] == self.settings.logout_method
                await self.app(scope, receive, self._signing_out(scope, send) if signing_out else send)
            return
        handle = Voice2FAHandle(self._challenger, scope)
        scope["voice2fa"] = handle
        try:
            if rule is not None:
                if kind == "websocket":
                    if await handle.identity() is not None and not await handle.is_verified(rule.fresh_within):
                        await send({"type": "websocket.close", "code": 1008, "reason": ""})
                        return
                else:
                    # handle.require(rule.fresh_within) without its coroutine: the same calls
                    # (identify once, then the one decision), as this runs on every protected request.
                    try:
                        identity = handle._settle(await handle._ask())
                    except (AssertionError, ConfigurationError) as exc:  # async identify, or sync's Misordered
                        problem = self.ctx.misordered(exc)
                        if problem is None:
                            raise
                        await self.ctx.misorder_response(problem)(scope, receive, send)
                        return
                    if not handle.lets_through(identity, rule.fresh_within):
                        assert identity is not None
                        denied = await handle.challenge(identity, rule.fresh_within, receive=receive)
                        await denied(scope, receive, send)
                        return
                    # Pages a browser navigated to (Accept: text/html) are not kept for its
                    # back button; API responses are left alone in "html" mode.
                    mode = self._no_store
                    # wants_no_store(mode, scope), inlined: this runs on every protected request.
                    if identity is not None and mode != "never" and (mode == "always" or accepts_html(scope)):
                        send = no_store(send, mode == "html")
            try:
                await self.app(scope, receive, send)
            except VerificationRequired as exc:
                # Raised by the FastAPI dependency before the endpoint answered anything.
                await exc.response(scope, receive, send)
            except Misordered as exc:
                # identify() failed in the app's route, asked by the dependency or the decorator.
                await self.ctx.misorder_response(exc)(scope, receive, send)
        finally:
            # scope -> handle -> scope is a reference cycle; breaking it lets every request
            # be freed at once instead of by the cyclic garbage collector.
            scope.pop("voice2fa", None)

    def _classify(self, path: str) -> tuple[int, ProtectedPath | None]:
        """Whose ``path`` is (the app's, ours, the app's sign-out), and the rule protecting it."""
        if path == self._prefix or path.startswith(self._prefix + "/"):
            return _OWN, None
        # The app's sign-out (the verify page's "Sign out" posts to it) is never challenged.
        if path == self.settings.logout_url:
            return _SIGN_OUT, None
        return _APP, self.rules.match(path)

    def _signing_out(self, scope: Scope, send: Send) -> Send:
        """Ends the verification on a successful response of the app's sign-out (S22).

        The verify page's "Sign out" button marks its post (``?voice2fa=signout``): when the
        app's sign-out answers it without a redirect (fastapi-users answers 204), the browser
        is sent to the app's home page instead of staying on a page that no longer works.
        """
        sign_out = self.ctx.cookies.sign_out_headers(scope)
        from_verify_page = b"voice2fa=signout" in scope.get("query_string", b"")
        home = (safe_root(scope.get("root_path", "")) + "/").encode()  # a same-site path (S27)

        async def send_signing_out(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                headers = [*message.get("headers", []), *sign_out]
                status = message["status"]
                if from_verify_page and status < 300:
                    status = 303
                    headers = [(k, v) for k, v in headers if k.lower() != b"location"] + [(b"location", home)]
                message = {**message, "status": status, "headers": headers}
            await send(message)

        return send_signing_out

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return lifespan_send

    async def aclose(self) -> None:
        """Close the caller's HTTP client and the store's connections (done at shutdown),
        after the notifications under way (up to 5 s)."""
        if self.notifier is not None:
            with anyio.move_on_after(5):
                await self.notifier.drain()
        await self.ctx.aclose()

    def client_address(self, conn: HTTPConnection) -> str:
        """The client's address: the ASGI peer, or ``X-Forwarded-For`` from trusted proxies."""
        return self.ctx.client_address(conn)

    @property
    def support(self) -> Support:
        """The support tasks (a user's state, lift a lockout, reset budgets, forget devices,
        cancel a challenge) on this middleware's store; see ``docs/operations/support.md``."""
        found: Support | None = self.__dict__.get("_support")
        if found is None:
            found = self.__dict__["_support"] = Support.of(self.ctx)
        return found

    def standards(self) -> list[Row]:
        """The NIST SP 800-63B-4 and ASVS 5.0 V6 report for this middleware: the settings,
        and whether recovery codes and notifications were given."""
        return standards(
            self.settings, recovery_enabled=self.ctx.recovery_enabled, notify_enabled=self.notifier is not None
        )


class _NotStarted(Voice2FAMiddleware):
    """A middleware whose set-up failed: the server must not start, and no request passes."""

    _failure: str

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.failed", "message": "voice2fa: " + self._failure})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await PlainTextResponse("voice2fa is not configured; the server log says why", status_code=500)(
                scope, receive, send
            )
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011, "reason": ""})

"""``Voice2FAMiddleware``: a pure ASGI middleware that adds a voice-call second factor.

This module only wires the parts together and runs the hot path: for each request, its own
endpoints (``_endpoints``), or a decision by the path rules (``_rules``) and the request's
handle (``_handle``), which starts a challenge (``_challenge``) when the user must verify.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._audit import AuditHook
from ._callers import Caller
from ._challenge import Challenger
from ._context import Context
from ._endpoints import OwnEndpoints
from ._handle import Voice2FAHandle
from ._protection import VerificationRequired
from ._rules import Identify, PathRules, ProtectedPath, route_path
from ._settings import Voice2FASettings
from ._store import Store


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
        self.rules = PathRules(protect)
        self.ctx = Context(
            identify=identify,
            settings=s,
            store=store,
            caller=caller,
            on_event=on_event,
            select_language=select_language,
            template_dirs=template_dirs,
            clock=clock,
        )
        self.store: Store = self.ctx.store
        self.caller: Caller = self.ctx.caller
        self._challenger = Challenger(self.ctx)
        self._own = OwnEndpoints(self._challenger)
        self._prefix = s.prefix
        # Path -> (one of ours?, rule): what _classify says, kept for the paths seen lately.
        self._paths: dict[str, tuple[bool, ProtectedPath | None]] = {}

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
            await self._own(scope, receive, send)
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
                    denied = await handle.require(rule.fresh_within)
                    if denied is not None:
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
        own = path == self._prefix or path.startswith(self._prefix + "/")
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
        await self.ctx.aclose()

    def client_address(self, conn: HTTPConnection) -> str:
        """The client's address: the ASGI peer, or ``X-Forwarded-For`` from trusted proxies."""
        return self.ctx.client_address(conn)

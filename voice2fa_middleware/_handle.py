"""``Voice2FAHandle``: what ``scope["voice2fa"]`` offers the app for one request.

The handle answers "who is this, did they verify, when" once per request, and ``require``
is the one place that decides whether a signed-in user may go on: the middleware's path
rules, the decorator and the FastAPI dependency all call it.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Scope

from ._challenge import Challenger
from ._http import Connection, scope_cookies
from ._rules import Identity, as_identity


class Voice2FAHandle:
    """Put in ``scope["voice2fa"]`` for the app: is the user verified, and when."""

    __slots__ = ("_challenger", "_conn", "_identified", "_identity", "_scope", "_verified_at")

    def __init__(self, challenger: Challenger, scope: Scope) -> None:
        self._challenger = challenger
        self._scope = scope
        self._conn: HTTPConnection | None = None
        self._identity: Identity | None = None
        self._identified = False
        self._verified_at: float | None = None

    def _connection(self) -> HTTPConnection:
        conn = self._conn
        if conn is None:
            # The cookies are parsed here once and shared by identify() and the proof check.
            conn = self._conn = Connection(self._scope, scope_cookies(self._scope))
        return conn

    async def identity(self) -> Identity | None:
        """Who is signed in (``identify``'s answer, asked once per request)."""
        if not self._identified:
            ctx = self._challenger.ctx
            conn = self._connection()
            if ctx.identify_is_async:
                identity = as_identity(await ctx.identify(conn))  # type: ignore[misc]
            else:
                identity = await ctx.identify_conn(conn)
            self._identity = identity
            self._identified = True
        return self._identity

    def _passes(self, identity: Identity, fresh_within: int | None) -> bool:
        """Whether ``identity`` holds a proof, fresh enough if asked (the time is kept)."""
        at = self._verified_at
        if at is None:
            ctx = self._challenger.ctx
            at = self._verified_at = ctx.cookies.verified_at(self._connection().cookies, self._scope, identity)
        return at is not None and (fresh_within is None or self._challenger.ctx.clock() - at <= fresh_within)

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
        identity = self._identity if self._identified else await self.identity()
        if identity is None or self._passes(identity, fresh_within):
            return None
        return await self._challenger.challenge(Request(self._scope), identity)

"""``Voice2FAHandle``: what ``scope["voice2fa"]`` offers the app for one request.

The handle answers "who is this, did they verify, when" once per request, and ``require``
is the one place that decides whether a signed-in user may go on: the middleware's path
rules, the decorator and the FastAPI dependency all call it.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope

from ._core.rules import Identity, as_identity
from ._core.urls import safe_next
from ._flow.challenge import Challenger
from ._flow.runtime import Misordered
from ._web.connection import Connection, scope_cookies
from ._web.cookies import wants_no_store, with_no_store


class Voice2FAHandle:
    """Put in ``scope["voice2fa"]`` for the app: is the user verified, and when."""

    __slots__ = ("_challenger", "_conn", "_identified", "_identity", "_outer", "_scope", "_verified_at")

    def __init__(self, challenger: Challenger, scope: Scope) -> None:
        self._challenger = challenger
        self._scope = scope
        # How many keys the scope had where the middleware stands: the app's middlewares and
        # router add theirs after (in place, so in order), and the first ones are what the
        # middleware's own pages will see (``_misordered_outside``).
        self._outer = len(scope)
        self._conn: HTTPConnection | None = None
        self._identity: Identity | None = None
        self._identified = False
        self._verified_at: float | None = None

    def _ask(self) -> Awaitable[object]:
        """The app's ``identify`` for this request, to await (cookies parsed here, once, and
        shared by ``identify`` and the proof check)."""
        challenger = self._challenger
        conn = self._conn = Connection(self._scope, scope_cookies(self._scope))
        if challenger.identify_is_async:
            identified: Awaitable[object] = challenger.identify(conn)  # type: ignore[assignment]  # checked at start-up
        else:
            identified = challenger.ctx.identify_conn(conn)
        devices = challenger.ctx.devices
        if devices is not None and devices.remember_only(conn.cookies):
            # A remember cookie may be the only proof: the user's forgotten devices are read
            # (cached a minute) before the proof is checked. Never for a verified cookie.
            return devices.after_identify(identified)
        return identified

    def _settle(self, result: object) -> Identity | None:
        """Keep ``identify``'s answer for the rest of the request."""
        identity = self._identity = as_identity(result)
        self._identified = True
        return identity

    async def identity(self) -> Identity | None:
        """Who is signed in (``identify``'s answer, asked once per request)."""
        if self._identified:
            return self._identity
        try:
            return self._settle(await self._ask())
        except AssertionError as exc:
            problem = self._challenger.ctx.misordered(exc)
            if problem is None:
                raise
            raise problem from exc

    def lets_through(self, identity: Identity | None, fresh_within: int | None) -> bool:
        """The decision, in one copy: anonymous users go on (signing in is the app's job),
        signed-in ones when they hold a proof, fresh enough if asked. Keeps the proof's time."""
        if identity is None:
            return True
        at = self._verified_at
        if at is None:
            conn = self._conn
            assert conn is not None  # set by _ask, which comes first
            at = self._verified_at = self._challenger.cookies.verified_at(conn.cookies, self._scope, identity)
            if at is None:  # no proof; a user without a phone passes if the settings allow it
                return identity[1] is None and self._challenger.phoneless == "allow"
        return fresh_within is None or self._challenger.clock() - at <= fresh_within

    async def verified_at(self) -> float | None:
        """When this user last verified (Unix time), or ``None``."""
        identity = await self.identity()
        self.lets_through(identity, None)  # keeps the time it finds
        return self._verified_at

    async def is_verified(self, fresh_within: int | None = None) -> bool:
        identity = await self.identity()
        return identity is not None and self.lets_through(identity, fresh_within)

    async def require(self, fresh_within: int | None = None) -> Response | None:
        """``None`` when the user may go on; else the response that asks for the factor.

        Anonymous users go on: signing in is the app's job.
        """
        identity = await self.identity()
        if identity is None or self.lets_through(identity, fresh_within):
            return None
        problem = await self._misordered_outside()
        if problem is not None:
            return self._challenger.ctx.misorder_response(problem)
        return await self.challenge(identity, fresh_within)

    async def _misordered_outside(self) -> Misordered | None:
        """Whether ``identify`` fails where the middleware asks it, though it worked here.

        The decorator and the FastAPI dependency run inside the app's middlewares; the verify
        page and the webhooks run outside them. A middleware ``identify`` needs that was added
        before ours (a session) works here and not there: asked now, before a call is placed,
        the answer is the 500 naming the fix, not a call whose verify page cannot open.
        """
        scope = self._scope
        keys = list(scope)
        if all(key == "voice2fa" for key in keys[self._outer :]):
            return None  # asked where the middleware stands: nothing ran in between
        outer = {key: scope[key] for key in keys[: self._outer]}
        try:
            await self._challenger.ctx.identify_conn(Connection(outer, scope_cookies(outer)))
        except Misordered as exc:
            return exc
        except Exception:  # the app's own failure: the verify page will meet it as it is today
            return None
        return None

    def mark_no_store(self, response: object) -> None:
        """Add ``Cache-Control: no-store`` to a protected response, as the settings ask: the
        same rule as for the middleware's path rules (``wants_no_store``, ``with_no_store``)."""
        mode = self._challenger.settings.protected_no_store
        if isinstance(response, Response) and wants_no_store(mode, self._scope):
            response.raw_headers[:] = with_no_store(response.raw_headers, mode == "html")

    def enrolment_url(self, next: str = "/") -> str:
        """The phone page (add or change the number), coming back to ``next`` (a path here)."""
        if not self._challenger.enrolment_enabled:
            raise RuntimeError("voice2fa: the phone page needs on_phone_confirmed=... on the middleware")
        return self._challenger.ctx.phone_url(HTTPConnection(self._scope), safe_next(next) or "/")

    async def start_enrolment(self, next: str = "/") -> Response:
        """A redirect (303) to the phone page for the signed-in user, back to ``next`` after."""
        return RedirectResponse(self.enrolment_url(next), status_code=303, headers={"cache-control": "no-store"})

    async def challenge(
        self, identity: Identity, fresh_within: int | None = None, *, receive: Receive | None = None
    ) -> Response:
        """The response that asks ``identity`` for the factor (a call, or the live challenge).
        ``receive``: the request's body has not been read, so a posted form can be kept for
        after the verification (the middleware's path rules pass it)."""
        request = Request(self._scope, receive) if receive is not None else Request(self._scope)
        return await self._challenger.challenge(
            request, identity, fresh_within=fresh_within, body_unread=receive is not None
        )

"""The dev phone: the console caller's calls, seen and heard in a browser (development only).

``GET {prefix}/dev/phone`` (a page) and ``GET {prefix}/dev/calls`` (JSON). They show codes,
so they answer only with the console caller, only to loopback clients and never through a
proxy (anything else gets the same 404 as an unknown path), and they show only the calls
to the signed-in user's own phone: another account on the same machine sees none of them.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from itsdangerous import BadData
from starlette.requests import Request
from starlette.responses import Response

from .._core.urls import is_loopback_host
from .._flow.runtime import Runtime
from .._telephony.callers import Caller
from .._telephony.simulator import SimulatedCall
from .._web.pages import json_response, text_response

# A code read one digit at a time ("1, 2, 3" or "1、2、3"): kept on one line on the page.
_CODE_RUN = re.compile(r"[0-9](?:\s*[,、，]\s*[0-9](?![0-9]))+")


def say_parts(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into (part, is_a_code) pieces."""
    parts: list[tuple[str, bool]] = []
    at = 0
    for run in _CODE_RUN.finditer(text):
        parts += [(text[at : run.start()], False), (run.group(), True)]
        at = run.end()
    return [p for p in [*parts, (text[at:], False)] if p[0]]


class DevEndpoints:
    def __init__(self, ctx: Runtime) -> None:
        self.ctx = ctx

    def _console(self, request: Request) -> Caller | None:
        """The development caller, when this request may see its calls."""
        caller = self.ctx.caller
        proxied = any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip"))
        if (
            self.ctx.dev_pages
            and not proxied
            and caller.calls_nobody
            and is_loopback_host(request.client.host if request.client else None)
        ):
            return caller
        return None

    async def _own_calls(self, request: Request, caller: Caller) -> list[SimulatedCall] | None:
        """The calls placed for the signed-in user's own challenges, oldest first; ``None``
        when signed out. Filtered by user, not by number: another account that typed this
        user's number on its phone page must not see this user's codes."""
        ctx = self.ctx
        identity = await ctx.identify_conn(request)
        if identity is None:
            return None
        user_tag = ctx.keys.tag("user", identity.user_id)
        return [c for c in caller.played_calls() if ctx.dev_call_owner(c.sid) == user_tag]

    def _placed_at(self, call: SimulatedCall) -> float | None:
        """When the call was placed (Unix time): the time its signed call script URL was made."""
        try:
            _value, when = self.ctx.keys.call.loads(call.url.rsplit("/", 1)[-1], return_timestamp=True)
        except (BadData, ValueError):
            return None
        return float(when.timestamp())

    def _described(self, calls: list[SimulatedCall]) -> list[dict[str, Any]]:
        """The calls, oldest first, numbered as they happened (the page shows the newest first),
        with when they were placed (UTC here; the page's script shows the browser's local time)."""
        return [
            {
                "number": number,
                "at": at,
                "at_utc": datetime.fromtimestamp(at, timezone.utc).isoformat() if at else None,
                "sid": c.sid,
                "to": c.to,
                "says": c.says,
                "statuses": c.statuses,
                "done": c.done,
                "error": c.error,
            }
            for number, c in enumerate(calls, 1)
            for at in [self._placed_at(c)]
        ]

    async def phone(self, request: Request) -> Response:
        caller = self._console(request)
        if caller is None:
            return text_response(404, "Not Found")
        calls = await self._own_calls(request, caller)
        return self.ctx.pages.html(
            "voice2fa/devphone.html",
            request=request,
            status=200,
            language="en",
            prefix=self.ctx.mounted(request),
            signed_in=calls is not None,
            calls=self._described(calls or [])[::-1],
            say_parts=say_parts,
        )

    async def calls(self, request: Request) -> Response:
        caller = self._console(request)
        if caller is None:
            return text_response(404, "Not Found")
        return json_response(200, {"calls": self._described(await self._own_calls(request, caller) or [])})

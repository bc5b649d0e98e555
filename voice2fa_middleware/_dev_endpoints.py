"""The dev phone: the console caller's calls, seen and heard in a browser (development only).

``GET {prefix}/dev/phone`` (a page) and ``GET {prefix}/dev/calls`` (JSON). They show codes,
so they answer only with the console caller, only to loopback clients and never through a
proxy; anything else gets the same 404 as an unknown path.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ._callers import ConsoleCaller
from ._context import Context
from ._pages import json_response, text_response
from ._settings import is_loopback_host


class DevEndpoints:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _console(self, request: Request) -> ConsoleCaller | None:
        """The console caller, when this request may see its calls."""
        caller = self.ctx.caller
        proxied = any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip"))
        if (
            self.ctx.dev_pages
            and not proxied
            and isinstance(caller, ConsoleCaller)
            and is_loopback_host(request.client.host if request.client else None)
        ):
            return caller
        return None

    async def phone(self, request: Request) -> Response:
        caller = self._console(request)
        if caller is None:
            return text_response(404, "Not Found")
        return self.ctx.pages.html(
            "voice2fa/devphone.html", status=200, language="en", prefix=self.ctx.prefix, calls=list(caller.calls)[::-1]
        )

    async def calls(self, request: Request) -> Response:
        caller = self._console(request)
        if caller is None:
            return text_response(404, "Not Found")
        calls = [
            {"sid": c.sid, "to": c.to, "says": c.says, "statuses": c.statuses, "done": c.done, "error": c.error}
            for c in caller.calls
        ]
        return json_response(200, {"calls": calls})

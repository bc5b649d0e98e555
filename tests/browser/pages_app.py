"""An app that shows each error page of the middleware on demand, for the browser tests.

``GET /state/<name>`` answers with the page ``Context.error`` makes for that state (the one
the middleware shows when it happens), behind a real middleware with a sign-out and a help
page set, so its stylesheet, script, links and forms are the real ones.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings

# name: (status, error, seconds to wait or None, reason)
STATES: dict[str, tuple[int, str, float | None, str | None]] = {
    "rate_limited": (429, "rate_limited", 3475, None),
    "locked": (429, "locked", 900, None),
    "no_challenge": (400, "no_challenge", None, None),
    "dead": (400, "dead", None, None),
    "call_failed": (503, "call_failed", 45, None),
    "provider_unavailable": (503, "provider_unavailable", 30, None),
    "store": (503, "store", 5, None),
    "phone": (403, "phone", None, None),
    "phone_country": (403, "phone", None, "country"),
    "no_phone": (403, "no_phone", None, None),  # signed in without a phone, phoneless="refuse"
    "short_wait": (429, "rate_limited", 2, None),
}


async def identify(conn: HTTPConnection) -> tuple[str, str]:
    return ("demo", "+12025550143")


async def home(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>Home</title><h1>Home</h1>")


async def state(request: Request) -> Response:
    status, error, wait, reason = STATES[request.path_params["name"]]
    ctx = middleware.ctx
    if error == "dead":  # the verify page's own answer to the last wrong code
        text = ctx.translations.translate(ctx.language(request), "error.dead")
        language = ctx.language(request)
        return ctx.pages.message(
            status=400,
            language=language,
            prefix=ctx.mounted(request),
            error="invalid_code",
            text=text,
            request=request,
            link="/account",
        )
    return ctx.error(request, status, error, retry_after=wait, link="/account", reason=reason)


inner = Starlette(routes=[Route("/", home), Route("/help", home), Route("/state/{name}", state)])
middleware = Voice2FAMiddleware(
    inner, identify=identify, settings=Voice2FASettings.from_env(logout_url="/logout", help_url="/help")
)
app = middleware

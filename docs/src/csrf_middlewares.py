import re

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette_csrf import CSRFMiddleware

from voice2fa_middleware import Voice2FAMiddleware

SECRET = "change-me: your own secret, 32 characters or more"


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("user")  # a stand-in for your own sign-in
    return (user, "+12025550143") if user else None


async def account(request: Request) -> PlainTextResponse:
    return PlainTextResponse("account")


routes = [Route("/account", account)]

# Either ours outermost: listed before the CSRF middleware, our endpoints answer before it runs.
ours_outermost = Starlette(
    routes=routes,
    middleware=[
        Middleware(Voice2FAMiddleware, identify=identify, protect=["/account"]),
        Middleware(CSRFMiddleware, secret=SECRET),
    ],
)

# Or the CSRF middleware outside, with our prefix exempt from it.
prefix_exempt = Starlette(
    routes=routes,
    middleware=[
        Middleware(CSRFMiddleware, secret=SECRET, exempt_urls=[re.compile(r"^/voice2fa/")]),
        Middleware(Voice2FAMiddleware, identify=identify, protect=["/account"]),
    ],
)

"""The app the benchmark drives, in the configuration named by BENCH_CONFIG."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings

SECRET = "bench-secret-key-0123456789abcdef"
CONFIG = os.environ.get("BENCH_CONFIG", "bare")
PROVIDER_DELAY = float(os.environ.get("BENCH_PROVIDER_DELAY", "0"))


class InstantCaller:
    """Answers Create Call at once (or after BENCH_PROVIDER_DELAY, without blocking)."""

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        if PROVIDER_DELAY:
            await asyncio.sleep(PROVIDER_DELAY)
        return "CA-bench"


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("user")
    return (user, "+12025550143") if user else None


async def plain(request: Request) -> Response:
    if "session" in request.scope:  # (d): the endpoint reads the session, as apps do
        request.session.get("user")
    return PlainTextResponse("hello")


def settings() -> Voice2FASettings:
    big = 10**9
    return Voice2FASettings(
        secret_key=SECRET,
        redis_url=os.environ.get("BENCH_REDIS_URL") or None,
        calls_per_hour=big,
        calls_per_phone_per_hour=big,
        calls_per_user_per_hour=big,
        calls_per_client_per_hour=big,
        memory_max_challenges=1_000_000,
        calls_per_second=0,  # (e) measures what a challenge costs, not the provider's pace (see pacing.py)
    )


# One route serves every path ("/", "/protected", "/session"), so routing costs the same in
# every configuration and the ratios show what the middleware costs, not where a route sits
# in the router's list.
routes = [Route("/{page:path}", plain)]


def build(config: str) -> Starlette:
    """The app in one configuration: "bare", "session" or "middleware"."""
    middleware: list[Middleware] = []
    if config == "session":
        middleware = [Middleware(SessionMiddleware, secret_key=SECRET)]
    elif config != "bare":
        options = {"identify": identify, "protect": ["/protected"], "settings": settings(), "caller": InstantCaller()}
        middleware = [Middleware(Voice2FAMiddleware, **options)]
    return Starlette(routes=routes, middleware=middleware)


app = build(CONFIG)

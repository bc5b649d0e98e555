"""The app that benchmarks/load.py drives: LOAD_USERS users, user0..userN-1, each with a
phone number of their own (+1202555 and four digits), the middleware on RedisStore.

Configured from the environment that load.py sets: VOICE2FA_REDIS_URL, SIGNALWIRE_SPACE
(the SignalWire double), SIGNALWIRE_PROJECT/TOKEN/NUMBER/SIGNING_KEY, VOICE2FA_PUBLIC_URL
(``http://127.0.0.1:PORT``), VOICE2FA_SECRET_KEY and LOAD_USERS. The shared budgets (per client address, per
phone, deployment-wide) are raised: every simulated user comes from 127.0.0.1 and the run
places thousands of calls an hour, so the defaults would refuse the benchmark by design. The
per-user budget keeps its default (5 calls an hour): a user refused during a fault must still
complete afterwards, which is only true if calls the provider refused are given back.

Sign in: ``POST /login?user=user7`` sets the cookie ``user=user7``. ``GET /protected`` needs the
voice check; ``GET /`` is public (a health check).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings

USERS = int(os.environ.get("LOAD_USERS", "300"))
BIG = 10**9


def phone_of(index: int) -> str:
    """The phone number of user ``index`` (10,000 numbers; more users share them in turn)."""
    return f"+1202555{index % 10_000:04d}"


def user_index(name: str | None) -> int | None:
    if not name or not name.startswith("user") or not name[4:].isdigit():
        return None
    index = int(name[4:])
    return index if index < USERS else None


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    name = conn.cookies.get("user")
    index = user_index(name)
    return None if index is None or name is None else (name, phone_of(index))


async def home(request: Request) -> Response:
    return PlainTextResponse("ok")


async def login(request: Request) -> Response:
    name = request.query_params.get("user")
    if user_index(name) is None or name is None:
        return JSONResponse({"error": "unknown_user"}, status_code=401)
    response = JSONResponse({"user": name})
    response.set_cookie("user", name, httponly=True, samesite="lax")
    return response


async def protected(request: Request) -> Response:
    return JSONResponse({"ok": True, "user": request.cookies.get("user")})


def settings() -> Voice2FASettings:
    return Voice2FASettings.from_env(
        calls_per_hour=BIG,
        calls_per_client_per_hour=BIG,
        calls_per_phone_per_hour=BIG,
        calls_per_second=0,  # the flow under load, not the provider's pace: see benchmarks/pacing.py
    )


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/protected", protected),
    ],
    middleware=[Middleware(Voice2FAMiddleware, identify=identify, protect=["/protected"], settings=settings())],
)

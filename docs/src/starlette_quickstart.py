from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware

PHONES = {"alice": "+12025550143"}  # your users table: user id -> phone number (E.164)


async def identify(conn: HTTPConnection) -> tuple[str, str | None] | None:
    """Who is signed in? Sync or async; None: nobody (the request passes untouched)."""
    user_id = conn.session.get("user_id")  # your own session
    return (user_id, PHONES.get(user_id)) if user_id else None


async def login(request: Request) -> JSONResponse:
    """A stand-in for your own sign-in: it believes the name it is given."""
    request.session["user_id"] = (await request.json())["user_id"]
    return JSONResponse({"signed_in": request.session["user_id"]})


async def account(request: Request) -> JSONResponse:
    return JSONResponse({"page": "account"})


async def reports(request: Request) -> JSONResponse:
    return JSONResponse({"page": "reports"})


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/account", account),
        Route("/admin/reports", reports),
    ],
    middleware=[
        # Listed outermost first: the session runs before Voice2FAMiddleware, whose identify() reads it.
        Middleware(SessionMiddleware, secret_key="change-me: your own secret, 32 characters or more"),
        Middleware(Voice2FAMiddleware, identify=identify, protect=["/account", "/admin/*"]),
    ],
)

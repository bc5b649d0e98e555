from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware

PHONES: dict[str, str] = {}  # your users table: user id -> number; nobody has one yet


async def identify(conn: HTTPConnection) -> tuple[str, str | None] | None:
    user_id = conn.session.get("user_id")  # your own session says who
    return (user_id, PHONES.get(user_id)) if user_id else None  # the number from the table; None: none yet


async def save_phone(user_id: str, e164: str) -> None:  # sync or async (sync: run in a worker thread)
    PHONES[user_id] = e164  # UPDATE users SET phone = e164 WHERE id = user_id


async def login(request: Request) -> JSONResponse:
    """A stand-in for your own sign-in."""
    request.session["user_id"] = (await request.json())["user_id"]
    return JSONResponse({"signed_in": request.session["user_id"]})


async def account(request: Request) -> JSONResponse:
    return JSONResponse({"phone": PHONES.get(request.session["user_id"])})


async def settings_phone(request: Request) -> Response:
    """Your own settings page: a button that changes the number."""
    return await request.scope["voice2fa"].start_enrolment(next="/account")


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/account", account),
        Route("/settings/phone", settings_phone, methods=["POST"]),
    ],
    middleware=[
        Middleware(SessionMiddleware, secret_key="change-me: your own secret, 32 characters or more"),
        Middleware(Voice2FAMiddleware, identify=identify, protect=["/account"], on_phone_confirmed=save_phone),
    ],
)

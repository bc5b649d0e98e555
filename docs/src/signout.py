from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings, forget_verification

PHONES = {"alice": "+12025550143"}


async def identify(conn: HTTPConnection) -> tuple[str, str | None] | None:
    user_id = conn.session.get("user_id")
    return (user_id, PHONES.get(user_id)) if user_id else None


async def login(request: Request) -> JSONResponse:
    """A stand-in for your own sign-in."""
    request.session["user_id"] = (await request.json())["user_id"]
    return JSONResponse({"signed_in": request.session["user_id"]})


async def logout(request: Request) -> Response:
    """POST /logout: logout_url below, so the middleware ends the verification on its 303."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return JSONResponse({"error": "cross-site"}, status_code=403)  # a link elsewhere must not sign anyone out
    request.session.clear()
    return RedirectResponse("/", status_code=303)


async def other_logout(request: Request) -> Response:
    """A sign-out the middleware does not watch: end the verification yourself."""
    request.session.clear()
    return forget_verification(RedirectResponse("/", status_code=303))


async def account(request: Request) -> JSONResponse:
    return JSONResponse({"page": "account"})


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/sso/logout", other_logout, methods=["POST"]),
        Route("/account", account),
    ],
    middleware=[
        Middleware(SessionMiddleware, secret_key="change-me: your own secret, 32 characters or more"),
        Middleware(
            Voice2FAMiddleware,
            identify=identify,
            protect=["/account"],
            settings=Voice2FASettings.from_env(logout_url="/logout"),  # the environment, and this
        ),
    ],
)

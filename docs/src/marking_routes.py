from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from voice2fa_middleware import ProtectedPath, Voice2FAMiddleware, require_voice_2fa


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("user")  # a stand-in for your own sign-in
    return (user, "+12025550143") if user else None


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("public")


async def account(request: Request) -> PlainTextResponse:  # protected by the path pattern below
    return PlainTextResponse("account")


async def payments(request: Request) -> PlainTextResponse:  # verified in the last 5 minutes
    return PlainTextResponse("payments")


@require_voice_2fa  # protected wherever the route is mounted
async def api_keys(request: Request) -> PlainTextResponse:
    return PlainTextResponse("keys")


@require_voice_2fa(fresh_within=60)  # step-up: verified in the last minute
async def delete_account(request: Request) -> PlainTextResponse:
    return PlainTextResponse("deleted")


async def status(request: Request) -> JSONResponse:
    """Your own code can ask too: the handle is in the request scope."""
    handle = request.scope["voice2fa"]
    return JSONResponse({"verified": await handle.is_verified(), "at": await handle.verified_at()})


app = Starlette(
    routes=[
        Route("/", home),
        Route("/account", account),
        Route("/payments", payments),
        Route("/settings/keys", api_keys),
        Route("/settings/delete", delete_account, methods=["POST"]),
        Route("/status", status),
    ]
)
app.add_middleware(
    Voice2FAMiddleware,
    identify=identify,
    protect=["/account", ProtectedPath("/payments", fresh_within=300)],
)

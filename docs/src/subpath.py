from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from voice2fa_middleware import Voice2FAMiddleware


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("user")  # a stand-in for your own sign-in
    return (user, "+12025550143") if user else None


async def account(request: Request) -> PlainTextResponse:
    return PlainTextResponse("account")


inner = Starlette(routes=[Route("/account", account)])
inner.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"])  # patterns: paths inside /app

# /app/account is protected; the verify page is /app/voice2fa/verify; SignalWire is given
# {VOICE2FA_PUBLIC_URL}/app/voice2fa/laml/<token> and {VOICE2FA_PUBLIC_URL}/app/voice2fa/status/<token>.
app = Starlette(routes=[Mount("/app", inner)])

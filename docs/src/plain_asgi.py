from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from voice2fa_middleware import Voice2FAMiddleware


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    """Any ASGI app: here, one that answers every HTTP request with its path."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    """conn is a Starlette HTTPConnection over the raw scope: read your sign-in cookie or header."""
    user = conn.cookies.get("user")
    return (user, "+12025550143") if user else None


app = Voice2FAMiddleware(inner, identify=identify, protect=["/account"])

import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later


async def account(request: Request) -> PlainTextResponse:
    return PlainTextResponse("your account")


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:  # a stand-in for your sign-in: a plain cookie
    return ("alice", "+12025550143") if conn.cookies.get("user") == "alice" else None


with SignalWireDouble() as double:  # SignalWire's API and carrier, on loopback
    port = port_for_later()
    env = double.env(public_url=f"http://127.0.0.1:{port}")  # SIGNALWIRE_* pointing at the double
    app = Starlette(routes=[Route("/account", account)])
    app.add_middleware(
        Voice2FAMiddleware, identify=identify, protect=["/account"], settings=Voice2FASettings.from_env(env)
    )
    with LiveServer(app, port=port) as server, httpx.Client(base_url=server.url, cookies={"user": "alice"}) as client:
        asked = client.get("/account", headers={"accept": "application/json"}).json()
        code = double.wait_for_code()  # what the call said
        client.post(asked["verify_url"], json={"code": code, "csrf_token": asked["csrf_token"]})
        assert client.get("/account").text == "your account"

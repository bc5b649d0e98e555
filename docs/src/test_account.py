"""tests/test_account.py of your app: the fixtures come with the testing extra, nothing to import."""

import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import port_for_later


async def account(request: Request) -> PlainTextResponse:
    return PlainTextResponse("your account")


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    return ("alice", "+12025550143") if conn.cookies.get("user") == "alice" else None


def test_account_needs_a_voice_call(signalwire_double, live_server_factory) -> None:
    port = port_for_later()  # the public URL must be known before the app is built
    settings = Voice2FASettings.from_env(signalwire_double.env(public_url=f"http://127.0.0.1:{port}"), env_file=None)
    app = Starlette(routes=[Route("/account", account)])
    app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"], settings=settings)
    server = live_server_factory(app, port=port)  # started now, stopped after the test
    with httpx.Client(base_url=server.url, cookies={"user": "alice"}) as client:
        asked = client.get("/account", headers={"accept": "application/json"})
        assert asked.status_code == 401
        code = signalwire_double.wait_for_code()
        body = {"code": code, "csrf_token": asked.json()["csrf_token"]}
        assert client.post(asked.json()["verify_url"], json=body).json()["verified"] is True
        assert client.get("/account").text == "your account"
    assert signalwire_double.calls[0].to == "+12025550143"

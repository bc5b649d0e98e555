"""tests/test_app.py of an app built when its module is imported (the usual FastAPI layout).

In your project the app lives in its own module (``from myapp.main import app``); it is here
to keep the sample whole. ``voice2fa_app`` comes with the testing extra, nothing to import.
"""

import httpx
from fastapi import FastAPI
from starlette.requests import HTTPConnection

from voice2fa_middleware import Voice2FAMiddleware


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    return ("alice", "+12025550143") if conn.cookies.get("user") == "alice" else None


app = FastAPI()  # built once, at import, with its settings read from the environment


@app.get("/account")
async def account() -> str:
    return "your account"


app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"])


def sign_in_by_voice(client: httpx.Client, double) -> None:
    asked = client.get("/account", headers={"accept": "application/json"})
    assert asked.status_code == 401
    body = {"code": double.wait_for_code(), "csrf_token": asked.json()["csrf_token"]}
    assert client.post(asked.json()["verify_url"], json=body).json()["verified"] is True


def test_account_after_a_call(voice2fa_app, signalwire_double) -> None:
    server = voice2fa_app(app)  # this test's double, a fresh caller and store
    with httpx.Client(base_url=server.url, cookies={"user": "alice"}) as client:
        sign_in_by_voice(client, signalwire_double)
        assert client.get("/account").json() == "your account"
    assert len(signalwire_double.calls) == 1


def test_a_second_test_calls_its_own_double(voice2fa_app, signalwire_double) -> None:
    server = voice2fa_app(app)
    with httpx.Client(base_url=server.url, cookies={"user": "alice"}) as client:
        sign_in_by_voice(client, signalwire_double)  # not the first test's double, long gone
        assert client.get("/account").status_code == 200


def test_settings_for_one_test(voice2fa_app, signalwire_double) -> None:
    server = voice2fa_app(app, code_digits=8)  # keywords: settings for this test only
    with httpx.Client(base_url=server.url, cookies={"user": "alice"}) as client:
        sign_in_by_voice(client, signalwire_double)
        assert client.get("/account").status_code == 200
    assert len(signalwire_double.wait_for_code()) == 8

"""The examples, run by uvicorn in their own processes and driven only through HTTP."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import SECRET, csrf_of, example_env, wrong_for

EXAMPLES = ["examples.starlette_app:app", "examples.fastapi_app:app"]


def sign_in(client: httpx.Client) -> None:
    r = client.post("/login", data={"username": "demo", "password": "demo"})
    assert r.status_code == 303


@pytest.mark.parametrize("target", EXAMPLES)
def test_example_whole_flow_against_signalwire_double(target: str, uvicorn_factory: Callable[..., Any]) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        env = example_env(double, port)
        app = uvicorn_factory(target, env, port=port)
        client = httpx.Client(base_url=app.url, timeout=20)
        assert client.get("/account").status_code == 303  # anonymous: the app's own login
        assert client.get("/account").headers["location"].startswith("/login")
        sign_in(client)

        r = client.get("/account")
        assert r.status_code == 303
        verify_url = r.headers["location"]
        assert verify_url == "/voice2fa/verify?next=%2Faccount"
        page = client.get(verify_url)
        assert page.status_code == 200
        assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
        assert page.headers["cache-control"] == "no-store"

        [call] = double.wait_for_calls(1)
        fields = dict(double.create_requests[0])
        assert fields["From"] == "+12025550100" and fields["To"] == "+12025550143"
        assert fields["Method"] == "POST"
        assert fields["Url"].startswith(f"http://127.0.0.1:{port}/voice2fa/laml/")
        assert fields["StatusCallback"].startswith(f"http://127.0.0.1:{port}/voice2fa/status/")
        assert call.laml_status_codes == [200, 200]
        assert call.status_callback_codes and set(call.status_callback_codes) == {204}
        code = call.code(6)
        assert code is not None
        assert sum(code in s.replace(", ", "") for s in call.says) == 2  # said twice
        for url in (fields["Url"], fields["StatusCallback"], verify_url, str(page.url)):
            assert code not in url

        csrf = csrf_of(page.text)
        bad = client.post("/voice2fa/verify", data={"code": wrong_for(code), "csrf_token": csrf, "next": "/account"})
        assert bad.status_code == 400
        assert "4 attempts left" in bad.text
        good = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf, "next": "/account"})
        assert good.status_code == 303 and good.headers["location"] == "/account"
        assert client.get("/account").status_code == 200
        assert "you passed the voice check" in client.get("/account").text
        assert client.get("/transfer").status_code == 200  # decorator / dependency, fresh enough
        assert len(double.calls) == 1  # later visits need no call

        other = httpx.Client(base_url=app.url, timeout=20)
        sign_in(other)
        assert other.get("/transfer").status_code == 303  # a second browser must verify itself

        unsigned = httpx.post(fields["Url"], data={"CallSid": call.sid, "CallStatus": "in-progress"})
        assert unsigned.status_code == 403
        assert code not in unsigned.text


@pytest.mark.parametrize("target", EXAMPLES)
def test_example_json_client_verifies_with_json(target: str, uvicorn_factory: Callable[..., Any]) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        env = example_env(double, port)
        app = uvicorn_factory(target, env, port=port)
        client = httpx.Client(base_url=app.url, timeout=20, headers={"accept": "application/json"})
        sign_in(client)
        r = client.get("/account")
        assert r.status_code == 401
        body = r.json()
        assert body["error"] == "voice2fa_required" and body["verify_url"].startswith("/voice2fa/verify")
        code = double.wait_for_code()
        assert code not in r.text
        ok = client.post(body["verify_url"], json={"code": code, "csrf_token": body["csrf_token"]})
        assert ok.status_code == 200 and ok.json()["verified"] is True
        assert client.get("/account").status_code == 200


def test_demo_runs_with_console_caller_and_no_credentials(uvicorn_factory: Callable[..., Any]) -> None:
    """The README's demo: no SignalWire account, the console caller plays the call locally."""
    app = uvicorn_factory("examples.starlette_app:app", {"VOICE2FA_SECRET_KEY": SECRET})
    client = httpx.Client(base_url=app.url, timeout=20)
    sign_in(client)
    r = client.get("/account", follow_redirects=True)
    assert r.status_code == 200 and "Verify it" in r.text
    deadline = time.monotonic() + 15
    code = None
    while code is None and time.monotonic() < deadline:
        calls = client.get("/voice2fa/dev/calls").json()["calls"]
        if calls and calls[-1]["done"]:
            digits = [re.sub(r"[^0-9]", "", s) for s in calls[-1]["says"]]
            code = next((d for d in digits if len(d) == 6), None)
            assert code, calls
        else:
            time.sleep(0.1)
    assert code is not None
    assert "NOT FOR PRODUCTION" in app.output() or "CONSOLE CALLER" in app.output()
    ok = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(r.text), "next": "/account"})
    assert ok.status_code == 303
    assert client.get("/account").status_code == 200
    phone = client.get("/voice2fa/dev/phone")
    assert phone.status_code == 200 and "Dev phone" in phone.text


@pytest.mark.redis
def test_two_processes_share_challenges_through_redis(redis_server: Any, uvicorn_factory: Callable[..., Any]) -> None:
    """A challenge created by one process is verified by another (RedisStore)."""
    with SignalWireDouble() as double:
        port_a = port_for_later()
        env = example_env(double, port_a, redis_server.url)
        a = uvicorn_factory("examples.starlette_app:app", env, port=port_a)
        b = uvicorn_factory("examples.starlette_app:app", env)
        client_a = httpx.Client(base_url=a.url, timeout=20)
        sign_in(client_a)
        r = client_a.get("/account")
        assert r.status_code == 303
        page = client_a.get(r.headers["location"])
        code = double.wait_for_code()
        # Same browser (cookies are per host, not per port), other process.
        client_b = httpx.Client(base_url=b.url, timeout=20, cookies=client_a.cookies)
        bad = client_b.post("/voice2fa/verify", data={"code": wrong_for(code), "csrf_token": csrf_of(page.text)})
        assert "4 attempts left" in bad.text
        again = client_a.post("/voice2fa/verify", data={"code": wrong_for(code), "csrf_token": csrf_of(page.text)})
        assert "3 attempts left" in again.text  # the count is shared
        ok = client_b.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
        assert ok.status_code == 303
        replay = client_a.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
        assert replay.status_code in (400, 403)
        assert client_b.get("/account").status_code == 200
        back_on_a = httpx.Client(base_url=a.url, timeout=20, cookies=client_b.cookies)
        assert back_on_a.get("/account").status_code == 200  # the verified cookie works on A too


@pytest.mark.redis
def test_uvicorn_two_workers_with_redis(redis_server: Any, uvicorn_factory: Callable[..., Any]) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        env = example_env(double, port, redis_server.url)
        app = uvicorn_factory("examples.starlette_app:app", env, port=port, workers=2)
        for n in range(3):
            client = httpx.Client(base_url=app.url, timeout=20)
            sign_in(client)
            r = client.get("/account")
            assert r.status_code == 303
            page = client.get(r.headers["location"])
            double.wait_for_calls(n + 1)
            code = double.calls[-1].code()
            assert code
            ok = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
            assert ok.status_code == 303, ok.text
            assert client.get("/account").status_code == 200


def test_double_rejects_bad_credentials() -> None:
    with SignalWireDouble() as double:
        url = f"{double.url}/api/laml/2010-04-01/Accounts/{double.project}/Calls.json"
        wrong = base64.b64encode(f"{double.project}:nope".encode()).decode()
        r = httpx.post(
            url, data={"From": "+1", "To": "+1", "Url": "http://x"}, headers={"authorization": f"Basic {wrong}"}
        )
        assert r.status_code == 401 and r.json()["code"] == "20003"
        assert double.calls == []

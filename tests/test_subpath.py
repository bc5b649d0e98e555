"""Deploy under a sub-path (S25): a Starlette ``Mount``, and ``uvicorn --root-path`` behind a real
prefix-stripping proxy; two independently protected apps on one host keep their cookies apart.
Every flow completes through the SignalWire double, whose signed webhooks must be accepted."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from voice2fa_middleware import SignalWireCaller, Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later

from .conftest import SECRET, csrf_of, identify


async def _page(request: Request) -> Response:
    return PlainTextResponse("account: secret page")


def _protected_app(double: SignalWireDouble, public_url: str, secret: str = SECRET) -> tuple[Starlette, Any]:
    """A protected app, and what closes its caller: a mounted app gets no lifespan events."""
    app = Starlette(routes=[Route("/account", _page), Route("/", _page)])
    settings = Voice2FASettings.from_env(double.env(public_url=public_url), env_file=None, secret_key=secret)
    assert settings.space_url and settings.signalwire_project and settings.signalwire_token
    caller = SignalWireCaller(
        space=settings.space_url, project=settings.signalwire_project, token=settings.signalwire_token
    )
    app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"], settings=settings, caller=caller)
    return app, caller.aclose


def _verify_under(client: httpx.Client, double: SignalWireDouble, root: str) -> None:
    """The whole flow under ``root``: every URL we get carries it, and the call's webhooks work."""
    r = client.get(f"{root}/account")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{root}/voice2fa/verify?next=%2F{root.strip('/')}%2Faccount"
    page = client.get(r.headers["location"])
    assert page.status_code == 200
    for url in re.findall(r'(?:action|href|src|data-status-url)="([^"]+)"', page.text):
        if url.startswith("data:"):  # inline (the favicon): no request, nothing to place
            continue
        assert url.startswith(f"{root}/"), url
    code = double.wait_for_code()
    create = dict(double.create_requests[-1])
    assert f"{root}/voice2fa/laml/" in create["Url"] and f"{root}/voice2fa/status/" in create["StatusCallback"]
    assert double.calls[-1].statuses[-1] == "completed"  # the signed webhooks were accepted
    done = client.post(f"{root}/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
    assert done.status_code == 303 and done.headers["location"] == f"{root}/account"
    assert client.get(f"{root}/account").text == "account: secret page"
    with httpx.Client(base_url=str(client.base_url), cookies={"test_user": "bob"}, timeout=20) as bob:
        api = bob.get(f"{root}/account", headers={"accept": "application/json"})
    assert api.status_code == 401
    assert api.json()["status_url"] == f"{root}/voice2fa/verify/status"


def test_under_a_mount() -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        inner, close = _protected_app(double, f"http://127.0.0.1:{port}")
        server = LiveServer(Starlette(routes=[Mount("/app", app=inner)]), port=port)
        server.on_stop.append(close)
        with server, httpx.Client(base_url=server.url, timeout=20) as client:
            client.cookies.set("test_user", "alice")
            _verify_under(client, double, "/app")
            verified = [c for c in client.cookies.jar if c.name == "voice2fa_verified"]
            assert [c.path for c in verified] == ["/app"]


def test_behind_a_prefix_stripping_proxy_with_uvicorn_root_path(uvicorn_factory: Callable[..., Any]) -> None:
    with SignalWireDouble() as double:
        proxy_port = port_for_later()
        env = {**double.env(public_url=f"http://127.0.0.1:{proxy_port}"), "VOICE2FA_SECRET_KEY": SECRET}
        app = uvicorn_factory("examples.starlette_app:app", env, extra_args=["--root-path", "/app"])
        proxy = uvicorn_factory("tests.apps.stripping_proxy:app", {"PROXY_UPSTREAM": app.url}, port=proxy_port)
        with httpx.Client(base_url=proxy.url, timeout=20) as client:
            login = client.post("/app/login?next=/app/account", data={"username": "demo", "password": "demo"})
            assert login.status_code == 303 and login.headers["location"] == "/app/account"
            r = client.get("/app/account")
            assert r.status_code == 303 and r.headers["location"].startswith("/app/voice2fa/verify?")
            page = client.get(r.headers["location"])
            assert 'action="/app/voice2fa/verify"' in page.text and 'href="/app/voice2fa/static/' in page.text
            code = double.wait_for_code()
            assert dict(double.create_requests[-1])["Url"].startswith(f"{proxy.url}/app/voice2fa/laml/")
            done = client.post("/app/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
            assert done.status_code == 303 and done.headers["location"] == "/app/account"
            assert client.get("/app/account").status_code == 200
        # The app and the proxy end before the double, as their connections to it do.
        proxy.stop()
        app.stop()


def test_two_apps_on_one_host_keep_their_verifications_apart() -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        public = f"http://127.0.0.1:{port}"
        app_a, close_a = _protected_app(double, public, secret="secret-of-app-a-0123456789")
        app_b, close_b = _protected_app(double, public, secret="secret-of-app-b-0123456789")
        server = LiveServer(Starlette(routes=[Mount("/a", app=app_a), Mount("/b", app=app_b)]), port=port)
        server.on_stop += [close_a, close_b]
        with server, httpx.Client(base_url=server.url, timeout=20) as client:
            client.cookies.set("test_user", "alice")
            _verify_under(client, double, "/a")
            assert client.get("/b/account").status_code == 303  # /a's proof is not /b's
            client.cookies.delete("voice2fa_pending", path="/b")
            _verify_under(client, double, "/b")
            assert client.get("/a/account").status_code == 200  # and /b's did not overwrite /a's
            assert sorted(c.path for c in client.cookies.jar if c.name == "voice2fa_verified") == ["/a", "/b"]


@pytest.mark.parametrize("url", ["https://app.example.com/app", "https://app.example.com/app/"])
def test_public_url_is_an_origin_and_says_so(url: str) -> None:
    with pytest.raises(ValueError, match="origin only"):
        Voice2FASettings(public_url=url, secret_key=SECRET)
    assert Voice2FASettings(public_url="https://app.example.com/", secret_key=SECRET).public_url

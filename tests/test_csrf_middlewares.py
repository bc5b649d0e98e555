"""Apps with their own CSRF middleware (starlette-csrf, asgi-csrf), installed from the registry:
the set-ups the README documents complete the flow, webhooks included; without them the
verify form is refused. Templates get the request, to embed the app's own token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later

from .conftest import SECRET, RecordingCaller, csrf_of, identify

starlette_csrf = pytest.importorskip("starlette_csrf")
asgi_csrf = pytest.importorskip("asgi_csrf")


async def _account(request: Request) -> Response:
    return PlainTextResponse("account: secret page")


def _ours(double: SignalWireDouble, port: int, **extra: Any) -> Middleware:
    settings = Voice2FASettings.from_env(double.env(public_url=f"http://127.0.0.1:{port}"), env_file=None)
    return Middleware(
        Voice2FAMiddleware,
        identify=identify,
        protect=["/account"],
        settings=settings.replace(secret_key=SECRET),
        **extra,
    )


def _theirs(kind: str, exempt: bool) -> Middleware:
    if kind == "starlette-csrf":
        return Middleware(
            starlette_csrf.CSRFMiddleware,
            secret=SECRET,
            exempt_urls=[re.compile(r"^/voice2fa/")] if exempt else None,
        )
    skip = (lambda scope: scope["path"].startswith("/voice2fa/")) if exempt else None
    return Middleware(asgi_csrf.asgi_csrf, signing_secret=SECRET, skip_if_scope=skip)


def _flow(double: SignalWireDouble, port: int, middleware: list[Middleware]) -> int:
    """Open the protected page, take the call, post the code; the final status of the page."""
    app = Starlette(routes=[Route("/account", _account), Route("/", _account)], middleware=middleware)
    server = LiveServer(app, port=port)
    with server, httpx.Client(base_url=server.url, cookies={"test_user": "alice"}, timeout=20) as client:
        page = client.get("/account", follow_redirects=True)
        assert page.status_code == 200 and "csrf_token" in page.text
        code = double.wait_for_code()
        assert double.calls[-1].statuses[-1] == "completed"  # the signed webhooks got through
        done = client.post(
            "/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text), "next": "/account"}
        )
        if done.status_code != 303:
            return done.status_code
        return client.get("/account").status_code


@pytest.mark.parametrize("kind", ["starlette-csrf", "asgi-csrf"])
@pytest.mark.parametrize("setup", ["exempt our prefix", "ours outermost"])
def test_documented_setups_complete_the_flow(kind: str, setup: str) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        if setup == "exempt our prefix":  # theirs outside ours, told to leave /voice2fa/ alone
            middleware = [_theirs(kind, exempt=True), _ours(double, port)]
        else:  # ours outside theirs: our endpoints answer before theirs runs
            middleware = [_ours(double, port), _theirs(kind, exempt=False)]
        assert _flow(double, port, middleware) == 200


def test_without_a_setup_their_check_refuses_our_form_and_the_webhooks() -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        middleware = [_theirs("starlette-csrf", exempt=False), _ours(double, port)]
        app = Starlette(routes=[Route("/account", _account), Route("/", _account)], middleware=middleware)
        server = LiveServer(app, port=port)
        with server, httpx.Client(base_url=server.url, cookies={"test_user": "alice"}, timeout=20) as client:
            page = client.get("/account", follow_redirects=True)
            call = double.wait_for_calls(1)[-1]
            assert "403" in (call.error or "")  # SignalWire's LaML fetch is refused
            posted = client.post("/voice2fa/verify", data={"code": "000000", "csrf_token": csrf_of(page.text)})
            assert posted.status_code == 403


def _override_base_template(folder: Path) -> None:
    """An app's own base template, embedding something only the request knows."""
    (folder / "voice2fa").mkdir()
    base = (Path(__file__).resolve().parent.parent / "voice2fa_middleware/templates/voice2fa/base.html").read_text()
    (folder / "voice2fa" / "base.html").write_text(
        base.replace("<body>", "<body data-app-token=\"{{ request.cookies.get('app_token', '') }}\">", 1)
    )


@pytest.mark.anyio
async def test_templates_get_the_request(tmp_path: Path) -> None:
    _override_base_template(tmp_path)
    app = Starlette(routes=[Route("/account", _account)])
    app.add_middleware(
        Voice2FAMiddleware,
        identify=identify,
        protect=["/account"],
        caller=RecordingCaller(),
        template_dirs=[tmp_path],
        settings=Voice2FASettings(secret_key=SECRET),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", follow_redirects=True) as client:
        client.cookies.set("test_user", "alice")
        client.cookies.set("app_token", "t0k3n")
        page = await client.get("/account")
        assert 'data-app-token="t0k3n"' in page.text

"""The middleware is pure ASGI: around a plain ASGI app, Quart (``app.asgi_app = ...``) and
Litestar (wrapped outermost), the whole flow completes through the SignalWire double. In each,
``identify`` gets a Starlette ``HTTPConnection`` over the raw scope (here: a plain cookie)."""

from __future__ import annotations

import importlib.util
from typing import Any

import httpx
import pytest
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    return ("alice", "+12025550143") if conn.cookies.get("user") == "alice" else None


def plain_asgi() -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"framework page " + scope["path"].encode()})

    return app


def quart_app() -> Any:
    from quart import Quart

    app = Quart(__name__)

    @app.route("/account")
    async def account() -> str:
        return "framework page /account"

    return app


def litestar_app() -> Any:
    from litestar import Litestar, get

    @get("/account", sync_to_thread=False)
    def account() -> str:
        return "framework page /account"

    return Litestar(route_handlers=[account])


def wrap(kind: str, settings: Voice2FASettings) -> Any:
    options: dict[str, Any] = {"identify": identify, "protect": ["/account"], "settings": settings}
    if kind == "quart":
        app = quart_app()
        app.asgi_app = Voice2FAMiddleware(app.asgi_app, **options)  # type: ignore[method-assign]
        return app
    inner = plain_asgi() if kind == "plain" else litestar_app()
    # Outermost: Litestar's own middleware list runs only for routes it matched, so there
    # the verify page would be a 404.
    return Voice2FAMiddleware(inner, **options)


@pytest.mark.parametrize("kind", ["plain", "quart", "litestar"])
def test_the_flow_around_other_frameworks(kind: str) -> None:
    if kind != "plain" and importlib.util.find_spec(kind) is None:
        pytest.skip(f"{kind} is not installed (it is in the 'test' extra)")
    with SignalWireDouble() as double:
        port = port_for_later()
        settings = Voice2FASettings.from_env(double.env(public_url=f"http://127.0.0.1:{port}"), env_file=None)
        server = LiveServer(wrap(kind, settings), port=port)
        with server, httpx.Client(base_url=server.url, cookies={"user": "alice"}, timeout=20) as client:
            asked = client.get("/account", headers={"accept": "application/json"})
            assert asked.status_code == 401, asked.text
            code = double.wait_for_code()
            body = asked.json()
            done = client.post(body["verify_url"], json={"code": code, "csrf_token": body["csrf_token"]})
            assert done.status_code == 200 and done.json()["verified"] is True
            assert client.get("/account").text == "framework page /account"
            page = client.get("/voice2fa/verify", follow_redirects=False)  # served by us, not a 404
            assert page.status_code == 400 and "voice2fa" in page.text.lower()

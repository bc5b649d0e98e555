"""The whole flow under every ASGI server we support, each in its own process as a user runs
it: uvicorn, hypercorn, granian (Rust) and daphne, with the SignalWire double as the carrier."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import csrf_of, example_env

SERVERS = ["uvicorn", "hypercorn", "granian", "daphne"]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("target", ["examples.starlette_app:app", "examples.fastapi_app:app"])
def test_the_flow_under_every_server(server: str, target: str, uvicorn_factory: Callable[..., Any]) -> None:
    if importlib.util.find_spec(server) is None:
        pytest.skip(f"{server} is not installed (it is in the 'test' extra)")
    with SignalWireDouble() as double:
        port = port_for_later()
        app = uvicorn_factory(target, example_env(double, port), port=port, server=server)
        with httpx.Client(base_url=app.url, timeout=20) as client:
            assert client.post("/login", data={"username": "demo", "password": "demo"}).status_code == 303
            r = client.get("/account")
            assert r.status_code == 303 and r.headers["location"].startswith("/voice2fa/verify?")
            page = client.get(r.headers["location"])
            assert page.status_code == 200
            code = double.wait_for_code()  # the double fetched the LaML from this server, signed
            assert double.calls[-1].statuses[-1] == "completed"
            done = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
            assert done.status_code == 303
            assert client.get("/account").status_code == 200
            out = client.post("/logout", headers={"origin": app.url})
            assert out.status_code == 303
        app.stop()

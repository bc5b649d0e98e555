"""The test kit as a user gets it: fixtures from the pytest plugin with nothing imported, and a
clear message when the 'testing' extra is missing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import port_for_later


async def _identify(conn: HTTPConnection) -> tuple[str, str] | None:
    return ("alice", "+12025550143") if conn.cookies.get("user") == "alice" else None


async def _account(request: object) -> PlainTextResponse:
    return PlainTextResponse("your account")


def test_the_plugin_gives_the_fixtures(signalwire_double: Any, live_server_factory: Callable[..., Any]) -> None:
    # Neither fixture is imported by this file nor by conftest.py: they come from the
    # pytest11 entry point the package installs.
    port = port_for_later()
    settings = Voice2FASettings.from_env(signalwire_double.env(public_url=f"http://127.0.0.1:{port}"), env_file=None)
    app = Starlette(routes=[Route("/account", _account)])
    app.add_middleware(Voice2FAMiddleware, identify=_identify, protect=["/account"], settings=settings)
    server = live_server_factory(app, port=port)
    with httpx.Client(base_url=server.url, cookies={"user": "alice"}, timeout=20) as client:
        asked = client.get("/account", headers={"accept": "application/json"}).json()
        code = signalwire_double.wait_for_code()
        ok = client.post(asked["verify_url"], json={"code": code, "csrf_token": asked["csrf_token"]})
        assert ok.status_code == 200
        assert client.get("/account").text == "your account"


def test_the_kit_without_its_extra_says_what_to_install() -> None:
    code = "import sys; sys.modules['uvicorn'] = None; import voice2fa_middleware.testing"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "pip install 'voice2fa-middleware[testing]'" in done.stderr


def test_the_plugin_itself_imports_nothing_heavy() -> None:
    code = "import sys, voice2fa_middleware.pytest_plugin; print('uvicorn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_the_fastapi_dependency_annotation_is_a_class_not_a_string() -> None:
    # FastAPI before 0.124 cannot resolve a string annotation on a callable instance's
    # __call__: "request: 'Request'" became a required query parameter (422 on every request).
    import inspect

    from starlette.requests import Request

    from voice2fa_middleware import VoiceTwoFactor

    annotation = inspect.signature(VoiceTwoFactor.__call__).parameters["request"].annotation
    assert annotation is Request

"""Start-up failures that cannot be missed: a bad setting stops the server, under uvicorn and
hypercorn with their default lifespan="auto", instead of serving 500s (or passing requests)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from voice2fa_middleware.testing import port_for_later

from .conftest import ROOT, SECRET

APP = "tests.apps.readme_fastapi:app"


def _server(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "hypercorn", APP, "--bind", f"127.0.0.1:{port}"]


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICE2FA_PUBLIC_URL": "http://app.example.com", "VOICE2FA_SECRET_KEY": SECRET}, "uses http://"),
        ({"VOICE2FA_CODE_TIL": "60"}, "did you mean VOICE2FA_CODE_TTL"),
        ({"VOICE2FA_REDIS_URL": "redis://127.0.0.1:1/0"}, "needs VOICE2FA_SECRET_KEY"),
    ],
)
def test_a_bad_setting_stops_the_server_with_the_message(server: str, env: dict[str, str], message: str) -> None:
    pytest.importorskip(server)
    port = port_for_later()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    proc = subprocess.run(
        _server(server, port), cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    output = proc.stdout + proc.stderr
    # Both stop at once rather than serve (run() returned: nothing is listening any more);
    # uvicorn exits with 3, hypercorn's parent process with 0 after its worker failed.
    assert proc.returncode != 0 or server == "hypercorn", output
    assert message in output, output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)


@pytest.mark.anyio
async def test_with_lifespan_off_every_request_is_refused_not_passed(monkeypatch: Any) -> None:
    monkeypatch.setenv("VOICE2FA_PUBLIC_URL", "http://app.example.com")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from voice2fa_middleware import Voice2FAMiddleware

    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("secret page")

    app = Starlette(routes=[Route("/account", page), Route("/", page)])
    app.add_middleware(Voice2FAMiddleware, identify=lambda conn: ("alice", "+12025550143"), protect=["/account"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in ("/", "/account", "/voice2fa/verify"):
            r = await client.get(path)
            assert r.status_code == 500 and "not configured" in r.text and "secret" not in r.text


@pytest.mark.anyio
async def test_identify_behind_a_misordered_session_names_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import HTTPConnection
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings

    async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
        user = conn.session.get("user")
        return (user, "+12025550143") if user else None

    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("secret page")

    app = Starlette(
        routes=[Route("/account", page)],
        middleware=[  # wrong order: the session is inside the 2FA middleware
            Middleware(
                Voice2FAMiddleware,
                identify=identify,
                protect=["/account"],
                settings=Voice2FASettings(secret_key=SECRET),
            ),
            Middleware(SessionMiddleware, secret_key=SECRET),
        ],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for _ in range(3):
            r = await client.get("/account")
            assert r.status_code == 500 and "secret page" not in r.text
            assert "needs SessionMiddleware to run before Voice2FAMiddleware" in r.text
    assert caplog.text.count("needs SessionMiddleware") == 1  # logged once

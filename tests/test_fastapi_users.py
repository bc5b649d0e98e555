"""fastapi-users, installed from the registry (its own nox session: the signalwire SDK pins an
old PyJWT that fastapi-users cannot use): register, sign in, a call, verified; sign-out ends
the verification, so the next sign-in is challenged again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import csrf_of, example_env

pytest.importorskip("fastapi_users", reason="run by 'nox -s tests_fastapi_users'")
pytest.importorskip("aiosqlite")


def _sign_in(client: httpx.Client, email: str = "ada@example.com") -> None:
    r = client.post("/auth/login", data={"username": email, "password": "correct horse battery"})
    assert r.status_code == 204, r.text


def test_fastapi_users_flow_and_sign_out(uvicorn_factory: Callable[..., Any], tmp_path: Path) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        env = {**example_env(double, port), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"}
        app = uvicorn_factory("examples.fastapi_users_app:app", env, port=port)
        with httpx.Client(base_url=app.url, timeout=20) as client:
            new = {"email": "ada@example.com", "password": "correct horse battery", "phone": "+12025550143"}
            assert client.post("/auth/register", json=new).status_code == 201
            assert client.get("/account").status_code == 401  # fastapi-users: not signed in
            _sign_in(client)
            r = client.get("/account")
            assert r.status_code == 303 and r.headers["location"].startswith("/voice2fa/verify")
            page = client.get(r.headers["location"])
            code = double.wait_for_code()
            done = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
            assert done.status_code == 303
            assert client.get("/account").json()["email"] == "ada@example.com"
            out = client.post("/auth/logout")
            assert out.status_code == 204
            assert "voice2fa_verified=" in out.headers.get("set-cookie", "")  # ended by the middleware
            _sign_in(client)  # the same browser, signed in again
            assert client.get("/account").status_code == 303  # challenged again
        app.stop()


def test_recovery_codes_in_the_apps_database_and_the_outbox(
    uvicorn_factory: Callable[..., Any], tmp_path: Path
) -> None:
    import re
    import threading

    with SignalWireDouble() as double:
        port = port_for_later()
        env = {**example_env(double, port), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"}
        app = uvicorn_factory("examples.fastapi_users_app:app", env, port=port)
        with httpx.Client(base_url=app.url, timeout=20) as client:
            new = {"email": "bea@example.com", "password": "correct horse battery", "phone": "+12025550143"}
            assert client.post("/auth/register", json=new).status_code == 201
            _sign_in(client, new["email"])
            page = client.get(client.get("/account").headers["location"])
            done = client.post(
                "/voice2fa/verify", data={"code": double.wait_for_code(), "csrf_token": csrf_of(page.text)}
            )
            assert done.status_code == 303
            form = client.get("/voice2fa/recovery")
            made = client.post("/voice2fa/recovery", data={"csrf_token": csrf_of(form.text)})
            codes = re.findall(r"<code>([a-z2-7-]{11})</code>", made.text)
            assert made.status_code == 201 and len(codes) == 10
            client.post("/auth/logout")
            _sign_in(client, new["email"])
            assert client.get("/account").status_code == 303
            use = client.get("/voice2fa/recovery/use?next=/account")
            token = csrf_of(use.text)
            results: list[int] = []
            barrier = threading.Barrier(6)
            cookies = dict(client.cookies)

            def submit() -> None:  # one code, six at once: one UPDATE changes the row
                with httpx.Client(base_url=app.url, cookies=cookies, timeout=30) as c:
                    barrier.wait()
                    results.append(
                        c.post("/voice2fa/recovery/use", data={"code": codes[0], "csrf_token": token}).status_code
                    )

            threads = [threading.Thread(target=submit) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(results) == [200] + [400] * 5
            used = client.post("/voice2fa/recovery/use", data={"code": codes[1], "csrf_token": token})
            assert used.status_code == 200 and "8 codes left" in used.text
            assert client.get("/account").json()["email"] == "bea@example.com"
            kinds = [m["kind"] for m in client.get("/outbox").json()]
            assert kinds[:3] == ["recovery_code_used", "recovery_code_used", "recovery_codes_created"]
        app.stop()

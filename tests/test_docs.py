"""The documentation site: every code sample under docs/src/ runs, most through a whole flow with
the project's own test kit (a SignalWire double and a real uvicorn server); the generated settings
reference agrees with Voice2FASettings; the figures the pages compute from the defaults are right.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.requests import HTTPConnection

from voice2fa_middleware import AuditEvent, ConfigurationError, Identity, Voice2FASettings
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later

from .conftest import ROOT, SECRET

DOCS = ROOT / "docs"
SRC = DOCS / "src"
JSON = {"accept": "application/json"}
SNIPPET = re.compile(r'--8<-- "([^"]+)"')


def pages() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted(DOCS.rglob("*.md"))}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("VOICE2FA_", "SIGNALWIRE_")):
            monkeypatch.delenv(name)
    return monkeypatch


@contextmanager
def served(sample: str, env: pytest.MonkeyPatch, attr: str = "app") -> Iterator[tuple[str, SignalWireDouble, dict]]:
    """The sample's app on uvicorn, its settings from the environment pointing at a double."""
    with SignalWireDouble() as double:
        port = port_for_later()
        for name, value in double.env(public_url=f"http://127.0.0.1:{port}").items():
            env.setenv(name, value)
        env.setenv("VOICE2FA_SECRET_KEY", SECRET)
        namespace = runpy.run_path(str(SRC / sample))
        with LiveServer(namespace[attr], port=port) as server:
            yield server.url, double, namespace


def verify(client: httpx.Client, double: SignalWireDouble, path: str) -> httpx.Response:
    """Ask for ``path`` as an API client, answer the call, send the code; the 401's body."""
    asked = client.get(path, headers=JSON)
    assert asked.status_code == 401, asked.text
    body = asked.json()
    assert body["error"] == "voice2fa_required", body
    code = double.wait_for_code()
    ok = client.post(body["verify_url"], json={"code": code, "csrf_token": body["csrf_token"]})
    assert ok.status_code == 200 and ok.json()["verified"] is True, ok.text
    return asked


# -- every sample is shown and tested ----------------------------------------------------------------

TESTED = {
    "fastapi_quickstart.py",
    "starlette_quickstart.py",
    "settings_in_code.py",
    "marking_routes.py",
    "fastapi_dependency.py",
    "translations.py",
    "enrolment.py",
    "signout.py",
    "subpath.py",
    "csrf_middlewares.py",
    "plain_asgi.py",
    "test_kit_flow.py",
    "test_account.py",
    "test_import_time_app.py",
    "audit_logging.py",
    "audit_hook.py",
    "prometheus.py",
    "fastapi_users_identify.py",
}


def test_every_sample_is_included_in_a_page_and_tested() -> None:
    included = {m for text in pages().values() for m in SNIPPET.findall(text)}
    samples = {p.name for p in SRC.glob("*.py")}
    assert {f"docs/src/{name}" for name in samples} <= included, "a sample no page includes"
    assert samples == TESTED, "a sample without a test here, or a test of a sample that is gone"
    for path in included:
        assert (ROOT / path).is_file(), path


def test_pages_stand_alone() -> None:
    for path, text in [*pages().items(), (ROOT / "README.md", (ROOT / "README.md").read_text())]:
        assert "shared/" not in text and "/work/" not in text, path
        assert not re.search(r"pypi\.org|pythonhosted|files\.pythonhosted", text), path
        assert "install 'voice2fa-middleware[" not in text, f"{path}: install from a clone: pip install '.[extra]'"


def test_readme_quickstart_is_the_docs_sample() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert (SRC / "fastapi_quickstart.py").read_text() in blocks


# -- the quickstarts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", ["fastapi_quickstart.py", "starlette_quickstart.py"])
def test_quickstart_whole_flow(sample: str, clean_env: pytest.MonkeyPatch) -> None:
    with served(sample, clean_env) as (url, double, _), httpx.Client(base_url=url) as client:
        # Anonymous requests pass protected routes: signing in is the app's job.
        assert client.get("/admin/reports").status_code == 200
        assert client.get("/account").json() == {"page": "account"}
        assert double.calls == []
        assert client.post("/login", json={"user_id": "alice"}).status_code == 200
        browser = client.get("/account", headers={"accept": "text/html"})
        assert browser.status_code == 303 and browser.headers["location"] == "/voice2fa/verify?next=%2Faccount"
        verify(client, double, "/admin/reports")  # attaches to the live challenge: one call
        assert len(double.calls) == 1 and double.calls[0].to == "+12025550143"
        assert double.calls[0].url.startswith(f"{url}/voice2fa/laml/")
        assert client.get("/account").json() == {"page": "account"}
        assert client.get("/admin/reports").json() == {"page": "reports"}


def test_settings_in_code(clean_env: pytest.MonkeyPatch) -> None:
    namespace = runpy.run_path(str(SRC / "settings_in_code.py"))
    assert namespace["settings"].logout_url == "/logout"
    strict = namespace["strict"]
    assert (strict.code_ttl, strict.remember_days, tuple(strict.allowed_countries)) == (120, 0, ("US", "CA"))


# -- guides ---------------------------------------------------------------------------------------------


def test_marking_routes(clean_env: pytest.MonkeyPatch) -> None:
    with served("marking_routes.py", clean_env) as (url, double, _):
        with httpx.Client(base_url=url) as anonymous:
            for path in ("/", "/account", "/payments", "/settings/keys"):
                assert anonymous.get(path).status_code == 200, path
        with httpx.Client(base_url=url, cookies={"user": "alice"}) as client:
            assert client.get("/").text == "public"
            assert client.get("/status").json() == {"verified": False, "at": None}
            for path in ("/account", "/payments"):
                assert client.get(path, headers=JSON).status_code == 401, path
            verify(client, double, "/settings/keys")
            assert client.get("/settings/keys").text == "keys"
            assert client.get("/payments").text == "payments"
            assert client.post("/settings/delete").text == "deleted"
            assert client.get("/status").json()["verified"] is True


def test_fastapi_dependency(clean_env: pytest.MonkeyPatch) -> None:
    with served("fastapi_dependency.py", clean_env) as (url, double, _):
        assert httpx.get(f"{url}/transfer").json() == {"user": None}
        with httpx.Client(base_url=url, cookies={"user": "alice"}) as client:
            verify(client, double, "/transfer")
            assert client.get("/transfer").json() == {"user": "alice"}


def test_translations(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SRC / "translations.py")], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 attempt left."


def test_enrolment(clean_env: pytest.MonkeyPatch) -> None:
    with served("enrolment.py", clean_env) as (url, double, namespace), httpx.Client(base_url=url) as client:
        client.post("/login", json={"user_id": "bob"})
        asked = client.get("/account", headers=JSON)
        assert asked.status_code == 401 and asked.json()["error"] == "voice2fa_phone_required", asked.text
        page = client.get(asked.json()["enrol_url"], headers=JSON).json()
        assert page["phone"] is None
        sent = client.post(page["submit_url"], json={"phone": "+12025550143", "csrf_token": page["csrf_token"]})
        assert sent.status_code == 202, sent.text
        code = double.wait_for_code()
        ok = client.post(sent.json()["verify_url"], json={"code": code, "csrf_token": sent.json()["csrf_token"]})
        assert ok.status_code == 200, ok.text
        assert namespace["PHONES"] == {"bob": "+12025550143"}
        assert client.get("/account").json() == {"phone": "+12025550143"}
        # The settings page's button: a user with a phone, verified just now, goes to the phone page.
        moved = client.post("/settings/phone")
        assert moved.status_code == 303 and "/voice2fa/phone" in moved.headers["location"], moved.headers


def test_signout(clean_env: pytest.MonkeyPatch) -> None:
    def deleted(response: httpx.Response) -> bool:
        cookies = response.headers.get_list("set-cookie")
        return any(c.startswith("voice2fa_verified=") and "Max-Age=0" in c for c in cookies)

    with served("signout.py", clean_env) as (url, double, _), httpx.Client(base_url=url) as client:
        for logout in ("/logout", "/sso/logout"):
            client.post("/login", json={"user_id": "alice"})
            verify(client, double, "/account")
            assert client.get("/account").status_code == 200
            out = client.post(logout, headers={"sec-fetch-site": "same-origin"})
            assert out.status_code == 303 and deleted(out), out.headers
            client.post("/login", json={"user_id": "alice"})
            assert client.get("/account", headers=JSON).status_code == 401  # challenged again
            double.wait_for_calls(len(double.calls))
        assert client.post("/logout", headers={"sec-fetch-site": "cross-site"}).status_code == 403


def test_subpath_webhook_urls(clean_env: pytest.MonkeyPatch) -> None:
    with served("subpath.py", clean_env) as (url, double, _):
        with httpx.Client(base_url=url, cookies={"user": "alice"}) as client:
            r = client.get("/app/account")
            assert r.status_code == 303 and r.headers["location"].startswith("/app/voice2fa/verify?"), r.headers
            asked = verify(client, double, "/app/account").json()
            assert asked["verify_url"].startswith("/app/voice2fa/")
            assert client.get("/app/account").text == "account"
        [call] = double.calls
        assert call.url.startswith(f"{url}/app/voice2fa/laml/")
        assert call.status_callback and call.status_callback.startswith(f"{url}/app/voice2fa/status/")


@pytest.mark.parametrize("attr", ["ours_outermost", "prefix_exempt"])
def test_csrf_middlewares(attr: str, clean_env: pytest.MonkeyPatch) -> None:
    with (
        served("csrf_middlewares.py", clean_env, attr) as (url, double, _),
        httpx.Client(base_url=url, cookies={"user": "alice"}) as client,
    ):
        verify(client, double, "/account")
        assert client.get("/account").text == "account"


def test_plain_asgi(clean_env: pytest.MonkeyPatch) -> None:
    with served("plain_asgi.py", clean_env) as (url, double, _):
        assert httpx.get(f"{url}/account").text == "/account"
        with httpx.Client(base_url=url, cookies={"user": "alice"}) as client:
            verify(client, double, "/account")
            assert client.get("/account").text == "/account"


def test_test_kit_flow(clean_env: pytest.MonkeyPatch) -> None:
    runpy.run_path(str(SRC / "test_kit_flow.py"))  # asserts the flow itself


def test_pytest_fixtures_sample(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(SRC / "test_account.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_import_time_app_sample_runs_three_tests_in_a_row(tmp_path: Path) -> None:
    """One app built at import, three tests: each gets its own double, caller and store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(SRC / "test_import_time_app.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_live_server_factory_is_documented_as_it_is(live_server_factory: Any) -> None:
    import inspect

    signature = str(inspect.signature(live_server_factory))
    assert signature.startswith("(app: 'Any', *, port: 'int' = 0)"), signature
    assert "`start(app, *, port=0) -> LiveServer`" in (DOCS / "guides" / "testing.md").read_text()


# -- operations ----------------------------------------------------------------------------------------------


def test_audit_logging() -> None:
    namespace = runpy.run_path(str(SRC / "audit_logging.py"))
    audit, handler = namespace["audit"], namespace["handler"]
    out = io.StringIO()
    handler.setStream(out)
    try:
        audit.info("voice2fa verified", extra={"voice2fa_kind": "verified", "voice2fa_user_id": "alice"})
    finally:
        audit.removeHandler(handler)
        audit.setLevel(logging.NOTSET)
    line = json.loads(out.getvalue())
    fields = {"voice2fa_kind": "verified", "voice2fa_user_id": "alice"}
    assert line == {"message": "voice2fa verified", "level": "INFO", **fields}


def test_audit_hook(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = runpy.run_path(str(SRC / "audit_hook.py"))
    event = AuditEvent("budget_exhausted", "alice", "127.0.0.1", 0.0, {"budget": "all", "limit": 1000})
    asyncio.run(namespace["on_event"](event))
    assert namespace["SEEN"] == [event]
    assert "shared call budget" in capsys.readouterr().out


def test_prometheus(clean_env: pytest.MonkeyPatch) -> None:
    with (
        served("prometheus.py", clean_env) as (url, double, _),
        httpx.Client(base_url=url, cookies={"user": "alice"}) as client,
    ):
        client.get("/account", headers=JSON)
        double.wait_for_code()
        metrics = client.get("/metrics/").text
    # Exporters before 0.46b0 kept a curly-brace unit in the name ("__challenge_").
    assert re.search(r"^voice2fa_challenges_started(?:__challenge_)?_total\{[^}]*\} 1\.0$", metrics, re.M), metrics


def test_fastapi_users_identify() -> None:
    module = runpy.run_path(str(SRC / "fastapi_users_identify.py"))
    user = SimpleNamespace(id=7, phone="", is_active=True, hashed_password="$argon2id$...0123456789ab")

    class Strategy:
        async def read_token(self, token: str, manager: object) -> object:
            return user if token == "good" else None

    async def get_user_manager() -> Any:
        yield object()

    identify = module["make_identify"](Strategy, get_user_manager)

    def conn(cookie: str | None) -> HTTPConnection:
        headers = [(b"cookie", f"auth={cookie}".encode())] if cookie else []
        return HTTPConnection({"type": "http", "headers": headers})

    assert asyncio.run(identify(conn("good"))) == Identity("7", None, "0123456789ab")
    assert asyncio.run(identify(conn("bad"))) is None
    assert asyncio.run(identify(conn(None))) is None
    user.is_active = False
    assert asyncio.run(identify(conn("good"))) is None


def test_budget_figures_follow_the_defaults() -> None:
    s = Voice2FASettings()
    text = (DOCS / "operations" / "budgets.md").read_text()
    for figure in (
        f"**{2 * s.calls_per_hour} per hour**, {2 * s.calls_per_hour * 24} per day",
        f"| {s.calls_per_phone_per_hour} per hour |",
        f"at most {s.enrol_calls_per_phone_per_hour} of them",
        f"| {s.calls_per_user_per_hour + s.enrol_calls_per_user_per_hour} per hour |",
        f"| {s.calls_per_client_per_hour + s.enrol_calls_per_client_per_hour} per hour |",
        f"| {s.max_calls_per_challenge} calls, {s.resend_cooldown} s apart |",
        f"**{2 * s.calls_per_hour} calls an hour**",
    ):
        assert figure in text, figure


# -- the settings reference ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_settings_reference_covers_every_setting(hooks: ModuleType) -> None:
    import dataclasses

    fields = [f.name for f in dataclasses.fields(Voice2FASettings) if f.init]
    rows = hooks.rows()
    assert [r.name for r in rows] == fields
    for row in rows:
        assert row.description and row.group and row.env, row
    documented = {r.name for r in rows if hooks._class_notes(Voice2FASettings)[r.name][1]}
    assert not documented & hooks.DESCRIPTIONS.keys(), "the class has its own docstring now: drop DESCRIPTIONS'"
    assert hooks.LIMITS.keys() <= set(fields)
    markdown = hooks.settings_markdown()
    for row in rows:
        assert f"`{row.env}`" in markdown
    assert hooks.MARKER in (DOCS / "reference" / "settings.md").read_text()


def test_settings_reference_environment_names(hooks: ModuleType) -> None:
    rows = hooks.rows()
    every = {r.env: "" for r in rows}  # empty values are skipped; unknown names would be refused
    Voice2FASettings.from_env(every, env_file=None)
    with pytest.raises(ConfigurationError, match="VOICE2FA_CODE_TIL is not a known setting"):
        Voice2FASettings.from_env({"VOICE2FA_CODE_TIL": "1"}, env_file=None)
    provider = {r.env: r.name for r in rows if r.env.startswith("SIGNALWIRE_")}
    values = {
        "signalwire_space": "http://127.0.0.1:9",
        "signalwire_project": "project",
        "signalwire_token": "token",
        "from_number": "+12025550100",
        "signing_key": "signing",
    }
    assert set(provider.values()) == set(values)
    settings = Voice2FASettings.from_env({env: values[name] for env, name in provider.items()}, env_file=None)
    for name, value in values.items():
        assert getattr(settings, name) == value


def test_settings_reference_limits(hooks: ModuleType) -> None:
    base = {"public_url": "https://app.example", "secret_key": "k" * 32}  # not loopback: every check applies

    def accepted(name: str, value: Any) -> bool:
        try:
            Voice2FASettings(**{**base, name: value})
        except ConfigurationError:
            return False
        return True

    for name, limit in hooks.LIMITS.items():
        if limit.low is not None:
            assert accepted(name, limit.low) and not accepted(name, limit.low - limit.step), name
        if limit.high is not None:
            assert accepted(name, limit.high) and not accepted(name, limit.high + limit.step), name
        for value in limit.refused:
            assert not accepted(name, value), (name, value)

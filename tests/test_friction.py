"""Friction an app author or a user meets: codes as people type them, the favicon, the test kit
for apps built at import time, a misordered middleware explained before any call."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse

from voice2fa_middleware import (
    ConfigurationError,
    Identity,
    Voice2FAMiddleware,
    Voice2FASettings,
    VoiceTwoFactor,
    require_voice_2fa,
)
from voice2fa_middleware._endpoints.verify import parse_code
from voice2fa_middleware._flow.runtime import default_store
from voice2fa_middleware.testing import SignalWireDouble, running, voice2fa_override

from .conftest import ROOT, SECRET, Harness, RecordingCaller, csrf_of


@pytest.mark.parametrize(
    "typed",
    ["1, 0, 9, 9, 5, 6", "109 956", "109-956", "109.956", "(109) 956", "109/956", "1、0、9、9、5、6", " 109956\n"],
)
def test_a_code_is_read_whatever_separates_its_digits(typed: str) -> None:
    assert parse_code(typed, 6) == "109956"


@pytest.mark.parametrize("typed", ["1o9956", "109 95l", "١٠٩٩٥٦", "10995", "1099567", "1 " * 40, ""])
def test_letters_other_digits_and_wrong_lengths_are_refused(typed: str) -> None:
    assert parse_code(typed, 6) is None


def test_the_code_as_the_dev_phone_shows_it_verifies_on_the_form(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        typo = code[:2] + "o" + code[3:]
        assert harness.verify(c, typo, csrf).status_code == 400  # a letter is not a separator
        spoken = ", ".join(code)
        r = harness.verify(c, spoken, csrf)
        assert r.status_code == 303 and r.headers["location"] == "/account"
        assert c.get("/account").text == "account: secret page"


def test_the_code_with_separators_verifies_in_json(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    with h.client() as c:
        asked = c.get("/account", headers={"accept": "application/json"}).json()
        h.double.wait_for_calls(1)
        code = h.double.calls[-1].code()
        assert code is not None
        r = c.post(asked["verify_url"], json={"code": f"({code[:3]}) {code[3:]}", "csrf_token": asked["csrf_token"]})
        assert r.status_code == 200, r.text
        assert c.get("/account").text == "account: secret page"


def test_the_verify_page_lets_the_browser_send_separators(harness: Harness) -> None:
    with harness.client() as c:
        page = c.get(c.get("/account").headers["location"]).text
        csrf_of(page)
        assert 'pattern="[0-9]*"' not in page  # the browser would refuse "109 956" before we see it


def test_the_verify_page_names_no_favicon_to_fetch(harness: Harness) -> None:
    with harness.client() as c:
        page = c.get(c.get("/account").headers["location"]).text
        assert '<link rel="icon" href="data:,">' in page


@pytest.mark.parametrize("target", ["examples.starlette_app", "examples.fastapi_app"])
def test_the_demo_nav_says_who_is_signed_in_and_offers_one_way(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("VOICE2FA_", "SIGNALWIRE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VOICE2FA_SECRET_KEY", SECRET)
    monkeypatch.delitem(sys.modules, target, raising=False)
    app = importlib.import_module(target).app
    with running(app) as server, httpx.Client(base_url=server.url) as c:
        anonymous = c.get("/").text
        assert "href=/login>Sign in</a>" in anonymous and "Sign out" not in anonymous
        assert "Signed in as" not in anonymous.split("<h1>")[0]
        assert '<link rel=icon href="data:image/svg+xml,' in anonymous
        assert c.post("/login", data={"username": "demo", "password": "demo"}).status_code in (200, 303)
        signed_in = c.get("/").text
        nav = signed_in.split("<h1>")[0]
        assert "Signed in as <b>demo</b>" in nav and "Sign out</button>" in nav
        assert "href=/login" not in nav
    monkeypatch.delitem(sys.modules, target, raising=False)


def test_the_ways_to_protect_say_that_anonymous_requests_pass() -> None:
    """Each row of the table in docs/guides/marking-routes.md says what an anonymous request gets."""
    text = (ROOT / "docs" / "guides" / "marking-routes.md").read_text()
    header, _, *rows = [line for line in text.splitlines() if line.startswith("| ")][:7]
    assert "anonymous request" in header
    ways = {row.split(" | ")[0].strip("| ") for row in rows}
    assert ways >= {"path patterns", "Starlette decorator", "FastAPI dependency"}
    for row in rows:
        assert row.replace("\\|", "").count(" | ") == 2 and row.rstrip(" |").rsplit(" | ", 1)[1], row


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://localhost:99999/0", "the port must be a number from 1 to 65535, not '99999'"),
        ("redis://localhost:abc/0", "the port must be a number from 1 to 65535, not 'abc'"),
        ("redis://[::1]:0", "not '0'"),
        ("http://localhost:6379", "the URL starts with http://"),
        ("redis+sentinel://localhost:70000/mymaster", "not '70000'"),
        ("redis+cluster://localhost:70000", "not '70000'"),
        ("redis+sentinel://localhost", "a Sentinel URL ends with /service_name"),
    ],
)
def test_a_redis_url_that_cannot_be_used_stops_the_start_with_the_setting_named(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        default_store(Voice2FASettings(secret_key=SECRET, redis_url=url), time.time)
    assert str(raised.value).startswith("voice2fa: VOICE2FA_REDIS_URL is not a usable Redis URL: ")
    assert words in str(raised.value) and "@" not in str(raised.value)


# -- a session inside the 2FA middleware: explained before any call ----------------------------------


def _misordered_app(identify_kind: str, caller: RecordingCaller) -> Any:
    """A FastAPI app whose SessionMiddleware runs inside Voice2FAMiddleware (added before it):
    identify() works in the app's routes, and not where the middleware asks it."""
    from fastapi import Depends, FastAPI

    def read_session(conn: HTTPConnection) -> tuple[str, str] | None:
        user = conn.session.get("user")
        return (user, "+12025550143") if user else None

    async def identify_async(conn: HTTPConnection) -> tuple[str, str] | None:
        return read_session(conn)

    app = FastAPI()

    @app.get("/login")
    async def login(request: Request) -> PlainTextResponse:
        request.session["user"] = "alice"
        return PlainTextResponse("signed in")

    @app.get("/account")
    async def account(request: Request) -> PlainTextResponse:
        return PlainTextResponse("account: secret page")

    @app.get("/transfer")
    async def transfer(identity: Identity | None = Depends(VoiceTwoFactor())) -> PlainTextResponse:  # noqa: B008
        return PlainTextResponse("transfer: secret page")

    @require_voice_2fa
    async def decorated(request: Request) -> PlainTextResponse:
        return PlainTextResponse("decorated: secret page")

    app.add_route("/decorated", decorated)
    app.add_middleware(SessionMiddleware, secret_key=SECRET)  # wrong: added first, so it runs inside
    app.add_middleware(
        Voice2FAMiddleware,
        identify=identify_async if identify_kind == "async" else read_session,
        protect=["/account"],
        settings=Voice2FASettings(secret_key=SECRET),
        caller=caller,
    )
    return app


@pytest.mark.parametrize("identify_kind", ["async", "sync"])
@pytest.mark.parametrize("path", ["/account", "/decorated", "/transfer"])
def test_a_misordered_session_is_explained_before_any_call(identify_kind: str, path: str) -> None:
    caller = RecordingCaller()
    with running(_misordered_app(identify_kind, caller)) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/login").text == "signed in"
        for _ in range(2):
            r = c.get(path)
            assert r.status_code == 500, (r.status_code, r.headers, r.text)
            assert "needs SessionMiddleware to run before Voice2FAMiddleware" in r.text
            assert "secret page" not in r.text
        assert caller.calls == []  # no call placed for a flow that could not finish


# -- the test kit and apps built at import time ----------------------------------------------------


def test_voice2fa_override_puts_the_app_back_and_needs_the_middleware(signalwire_double: SignalWireDouble) -> None:
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(Voice2FAMiddleware, identify=lambda conn: None, caller=RecordingCaller())
    before = list(app.user_middleware)
    with voice2fa_override(app, double=signalwire_double, code_ttl=120):
        [entry] = [m for m in app.user_middleware if m.cls is Voice2FAMiddleware]
        assert entry.kwargs["settings"].signalwire_space == signalwire_double.url
        assert entry.kwargs["settings"].code_ttl == 120 and "caller" not in entry.kwargs
        assert app.middleware_stack is None
    assert app.user_middleware == before and app.middleware_stack is None
    with (
        pytest.raises(LookupError, match="no Voice2FAMiddleware"),
        voice2fa_override(FastAPI(), double=signalwire_double),
    ):
        pass

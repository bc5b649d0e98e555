"""The verify experience over HTTP: remember this device, sign-out, languages, call status."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from voice2fa_middleware.testing import SignalWireDouble

from .conftest import Harness


def test_remembered_device_skips_the_call_until_the_app_revokes_it(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        r = harness.verify(c, code, csrf, remember="1")
        assert r.status_code == 303
        remember = [x for x in r.headers.get_list("set-cookie") if x.startswith("voice2fa_remember=")]
        assert remember and "Max-Age=2592000" in remember[0] and "HttpOnly" in remember[0]
        token = c.cookies["voice2fa_remember"]
    with harness.client() as later:  # a new browser session: only the remembered device
        later.cookies.set("voice2fa_remember", token)
        assert later.get("/account").text == "account: secret page"
        assert "set-cookie" not in later.get("/account").headers  # nothing rewritten
        assert len(harness.double.create_requests) == 1  # no call for the remembered device
        harness.clock.offset = 61
        assert later.get("/pay").status_code == 303  # step-up still wants a fresh call
    with harness.client("bob") as bob:
        bob.cookies.set("voice2fa_remember", token)
        assert bob.get("/account").status_code == 303  # worthless to another user
    with harness.client() as revoked:
        revoked.cookies.set("voice2fa_remember", token)
        revoked.cookies.set("test_version", "password-changed")
        assert revoked.get("/account").status_code == 303


def test_no_remember_cookie_without_the_checkbox(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        page = c.get("/voice2fa/verify?next=/account")
        assert 'name="remember"' in page.text and "30 days" in page.text
        r = harness.verify(c, code, csrf)
        assert not any(x.startswith("voice2fa_remember=") for x in r.headers.get_list("set-cookie"))


def test_remember_can_be_turned_off_and_sign_out_shown(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(remember_days=0, logout_url="/logout")
    with h.client() as c:
        csrf, code = h.challenge(c)
        page = c.get("/voice2fa/verify?next=/account")
        assert 'name="remember"' not in page.text
        assert re.search(r'<form method="post" action="/logout\?voice2fa=signout">', page.text)
        assert "Sign out" in page.text
        r = h.verify(c, code, csrf, remember="1")
        assert not any(x.startswith("voice2fa_remember=") for x in r.headers.get_list("set-cookie"))


def test_verify_page_speaks_the_users_language(harness: Harness) -> None:
    with harness.client(headers={"accept-language": "de-DE,de;q=0.9"}) as c:
        r = c.get("/account", follow_redirects=True)
        assert '<html lang="de">' in r.text and "Bestätigungscode" in r.text and "••••\u00a00143" in r.text
        harness.double.wait_for_calls(1)
        call = harness.double.calls[0]
        assert "Taste" in call.says[0] and "Ihr Bestätigungscode lautet" in call.says[1]
    with harness.client(headers={"accept-language": "sv"}) as c:
        assert "Verify it" in c.get("/account", follow_redirects=True).text  # unknown: English


def test_a_verified_cookie_is_not_a_remembered_device(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(verified_max_age=3)  # time enough to be checked once, on a busy machine
    with h.client() as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303
        verified = c.cookies["voice2fa_verified"]
        assert c.get("/account").status_code == 200  # checked, and cached
    with h.client() as swapped:
        time.sleep(4.1)  # the verified cookie has expired (whole-second timestamps)
        swapped.cookies.set("voice2fa_remember", verified)  # same token, other slot
        assert swapped.get("/account").status_code == 303


@pytest.mark.parametrize(
    ("outcome", "text"), [("busy", "busy"), ("no-answer", "not answered"), ("failed", "could not be completed")]
)
def test_verify_page_tells_when_the_call_failed(
    harness_factory: Callable[..., Harness], outcome: str, text: str
) -> None:
    h = harness_factory(double=SignalWireDouble(outcome=outcome).start())
    with h.client() as c:
        first = c.get("/account")
        h.double.wait_for_calls(1)
        assert h.double.calls[0].statuses == ["ringing", outcome]
        status = c.get("/voice2fa/verify/status").json()
        assert status["call_status"] == outcome and status["resend_in"] > 0
        page = c.get(first.headers["location"])
        assert text in page.text


def test_help_link_on_every_page_and_error_pages_offer_ways_forward(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(help_url="/help", logout_url="/logout")
    with h.client() as c:
        h.challenge(c)
        page = c.get("/voice2fa/verify?next=/account")
        assert '<a href="/help">Help and contact</a>' in page.text
        r = c.post("/voice2fa/resend", data={"csrf_token": "wrong", "next": "/account"})
        assert r.status_code == 403
        assert '<a href="/help">Help and contact</a>' in r.text
        assert 'id="v2fa-again" href="/account">Try again</a>' in r.text
        assert '<a class="v2fa-link" href="/">Back to the home page</a>' in r.text
        assert re.search(r'<form method="post" action="/logout\?voice2fa=signout">', r.text)


@pytest.mark.parametrize("url", ["http://example.com/help", "javascript:alert(1)", "//evil.example/help", "help"])
def test_help_url_must_be_a_path_here_or_https(url: str) -> None:
    from voice2fa_middleware import ConfigurationError, Voice2FASettings

    with pytest.raises(ConfigurationError, match="help_url"):
        Voice2FASettings(help_url=url)
    assert Voice2FASettings(help_url="https://help.example.com/voice").help_url
    assert Voice2FASettings.from_env({"VOICE2FA_HELP_URL": "/help"}, env_file=None).help_url == "/help"

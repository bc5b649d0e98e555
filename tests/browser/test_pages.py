"""Pages that never dead-end, in a real browser: every error state says what happened, when
to try again (a live countdown), and offers ways forward; the verify page does not move
when its countdown ends; axe finds nothing, light and dark, phone and desktop.

Screenshots: ``test-artifacts/state-<name>-<scheme>-<width>.png``,
``verify-resend-<lang>-<width>-{counting,ready}.png`` and ``dev-phone-numbered.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from ..conftest import SECRET, ServerProcess, example_env, uvicorn_command
from .conftest import new_page, shot
from .pages_app import STATES
from .test_browser import sign_in_and_open_account

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
WAITING = [name for name, (_s, _e, wait, _r) in STATES.items() if wait]


@pytest.fixture(scope="module")
def states() -> Iterator[str]:
    """The app of ``pages_app``, served by uvicorn for the module's tests."""
    port = port_for_later()
    server = ServerProcess(uvicorn_command("tests.browser.pages_app:app", port), {"VOICE2FA_SECRET_KEY": SECRET}, port)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def axe_script() -> str:
    axe = pytest.importorskip("axe_playwright_python", reason="needs axe-playwright-python (the test extra)")
    return str(Path(axe.__file__).with_name("axe.min.js"))


def axe_violations(page: Any, script: str) -> list[Any]:
    page.add_script_tag(path=script)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return list(result["violations"])


@pytest.mark.parametrize("name", [n for n in STATES if n != "short_wait"])
def test_every_error_state_shows_when_and_ways_forward(browser: Any, states: str, axe_script: str, name: str) -> None:
    _status, _error, wait, _reason = STATES[name]
    page = new_page(browser, states)
    for scheme in ("light", "dark"):
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(size)
            page.emulate_media(color_scheme=scheme)
            page.goto(f"/state/{name}")
            text = page.locator("main").inner_text()
            assert page.get_by_role("alert").inner_text().strip()  # what happened
            assert not re.search(r"\d{3,} ?(seconds|s\b)", text), text  # never raw seconds
            again = page.get_by_role("link", name="Try again")
            assert again.get_attribute("href") == "/account"
            assert page.get_by_role("link", name="Back to the home page").get_attribute("href") == "/"
            assert page.get_by_role("button", name="Sign out").is_visible()
            assert page.get_by_role("link", name="Help and contact").get_attribute("href") == "/help"
            if wait:
                assert re.search(r"(?i)try again in \d+ (second|minute|hour)s?\.", text), text
                assert re.search(r"Time left: \d+:\d\d", text), text
                assert again.get_attribute("aria-disabled") == "true"
            else:
                assert again.get_attribute("aria-disabled") is None
            assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
            shot(page, f"state-{name}-{scheme}-{label}")
            violations = axe_violations(page, axe_script)
            assert violations == [], (name, scheme, label, violations)
    page.context.close()


def test_country_has_its_own_message(browser: Any, states: str) -> None:
    page = new_page(browser, states)
    page.goto("/state/phone_country")
    assert "does not place calls to its country" in page.get_by_role("alert").inner_text()
    page.goto("/state/phone")
    assert "country" not in page.get_by_role("alert").inner_text()
    page.context.close()


def test_countdown_ends_and_try_again_is_enabled_under_the_real_csp(browser: Any, states: str) -> None:
    page = new_page(browser, states, bypass_csp=False, locale="es-ES")
    page.goto("/state/short_wait")
    again = page.get_by_role("link", name="Intentar de nuevo")
    assert again.get_attribute("aria-disabled") == "true"
    assert "0:0" in page.locator("#v2fa-wait-clock").inner_text()
    before = again.bounding_box()
    page.locator("#v2fa-again:not([aria-disabled])").wait_for(timeout=5000)  # no eval under the CSP
    assert page.get_by_role("status").inner_text() == "Ya puede volver a intentarlo."
    assert again.bounding_box() == before  # nothing moved
    shot(page, "state-countdown-ended-es")
    again.click()
    page.wait_for_url("**/account")
    page.context.close()


# -- the verify page: nothing moves when the resend countdown ends ------------------------------


@pytest.fixture
def short_cooldown(uvicorn_factory: Callable[..., Any]) -> Iterator[str]:
    with SignalWireDouble() as double:
        port = port_for_later()
        env = {**example_env(double, port), "VOICE2FA_RESEND_COOLDOWN": "2", "VOICE2FA_HELP_URL": "/"}
        app = uvicorn_factory("examples.starlette_app:app", env, port=port)
        yield app.url


BOXES = "#v2fa-resend, #v2fa-code, .v2fa-form button[type=submit], #v2fa-resend-wait"


@pytest.mark.parametrize("locale", ["en-US", "es-ES"])
@pytest.mark.parametrize("label", ["phone", "desktop"])
def test_verify_page_does_not_move_when_the_countdown_ends(
    browser: Any, short_cooldown: str, locale: str, label: str
) -> None:
    size = PHONE if label == "phone" else DESKTOP
    page = new_page(browser, short_cooldown, viewport=size, locale=locale, bypass_csp=False)
    # The call status line is the page's other moving part: held still, to see the countdown's own effect.
    page.route("**/voice2fa/verify/status", lambda route: route.abort())
    sign_in_and_open_account(page)
    resend = page.locator("#v2fa-resend")
    assert resend.is_disabled()
    boxes = page.locator(BOXES)

    def measure() -> list[Any]:
        return [boxes.nth(i).bounding_box() for i in range(boxes.count())]

    before = measure()
    button, hint = before[0], before[3]
    # The countdown sits beside the button, or on its own line below it: never wrapped around it.
    beside = hint["x"] >= button["x"] + button["width"]
    below = hint["y"] >= button["y"] + button["height"] and hint["x"] >= button["x"] - 1
    assert beside or below, (button, hint)
    lang = locale[:2]
    shot(page, f"verify-resend-{lang}-{label}-counting")
    page.locator("#v2fa-resend:enabled").wait_for(timeout=6000)
    assert measure() == before  # nothing moved
    assert page.locator("#v2fa-resend-wait").is_hidden() or not page.locator("#v2fa-resend-wait").is_visible()
    shot(page, f"verify-resend-{lang}-{label}-ready")
    assert page.get_by_role("link", name=re.compile("Help|Ayuda")).is_visible()
    page.context.close()


# -- the examples and the dev phone ---------------------------------------------------------------


@pytest.mark.parametrize("target", ["examples.starlette_app:app", "examples.fastapi_app:app"])
def test_example_pages_share_the_stylesheet_and_have_no_404(
    browser: Any, uvicorn_factory: Callable[..., Any], axe_script: str, target: str
) -> None:
    app = uvicorn_factory(target, {"VOICE2FA_SECRET_KEY": SECRET})
    page = new_page(browser, app.url, viewport=PHONE)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    name = target.split(".")[1].split(":")[0]
    for path, title in (("/", "voice2fa demo"), ("/login", "Sign in")):
        page.goto(path)
        assert page.get_by_role("heading", name=re.compile(title)).is_visible()
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, f"example-{name}{path.replace('/', '-').rstrip('-')}")
        assert axe_violations(page, axe_script) == []
    sign_in_and_open_account(page)
    shot(page, f"example-{name}-verify")
    assert failed == []
    page.context.close()


def test_dev_phone_lists_the_newest_call_first_numbered_with_its_time(
    browser: Any, uvicorn_factory: Callable[..., Any]
) -> None:
    app = uvicorn_factory(
        "examples.starlette_app:app", {"VOICE2FA_SECRET_KEY": SECRET, "VOICE2FA_RESEND_COOLDOWN": "0"}
    )
    verify = new_page(browser, app.url, viewport=PHONE)
    sign_in_and_open_account(verify)
    phone = verify.context.new_page()
    phone.goto("/voice2fa/dev/phone")
    phone.locator(".v2fa-call").first.wait_for()
    verify.get_by_role("button", name="Call me again").click()
    verify.wait_for_url("**sent=1")
    phone.locator(".v2fa-call:nth-child(2)").wait_for()
    heads = phone.locator(".v2fa-call-head").all_inner_texts()
    assert heads[0].startswith("Call 2") and heads[1].startswith("Call 1"), heads
    assert all(re.search(r"\d{1,2}:\d\d:\d\d", h) for h in heads), heads  # the local time of the call
    codes = phone.locator(".v2fa-spoken-code")
    assert codes.count() >= 2
    for i in range(codes.count()):
        box = codes.nth(i).bounding_box()
        assert box is not None and box["height"] < 30, box  # one line: never wrapped mid-code
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(phone, "dev-phone-numbered")
    verify.context.close()

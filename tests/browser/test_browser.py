"""The verify experience in a real browser: Playwright driving Debian's Chromium, headless.

Screenshots go to ``test-artifacts/`` (or ``$VOICE2FA_ARTIFACTS``). Needs the ``chromium``
Debian package; CI installs it, and locally these tests skip without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voice2fa_middleware.testing import SignalWireDouble

from ..conftest import SECRET, wrong_for
from .conftest import new_page, shot

pytestmark = pytest.mark.browser


def sign_in_and_open_account(page: Any) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Sign in").click()
    page.goto("/account")
    page.wait_for_url("**/voice2fa/verify?next=%2Faccount")


def open_verify(browser: Any, base: str, **context: Any) -> Any:
    """A new browser context, signed in, on the verify page for /account."""
    page = new_page(browser, base, **context)
    sign_in_and_open_account(page)
    return page


def test_whole_flow_in_chromium(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    base, double = site
    page = open_verify(browser, base)
    assert page.get_by_role("heading", name="Verify it's you").is_visible()
    assert "••••\u00a00143" in page.locator(".v2fa-lead").inner_text()  # kept on one line
    page.wait_for_function("document.getElementById('v2fa-status-text').textContent.includes('ended')")
    shot(page, "verify-desktop")
    code = double.wait_for_code()
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/account")
    assert page.get_by_role("heading", name="Your account").is_visible()
    shot(page, "account-after-verify")
    page.context.close()


def test_wrong_code_is_announced_with_attempts_left(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    base, double = site
    page = open_verify(browser, base)
    code = double.wait_for_code()
    page.get_by_label("Verification code").fill(wrong_for(code))
    page.get_by_role("button", name="Verify").click()
    alert = page.get_by_role("alert")
    assert "4 attempts left" in alert.inner_text()
    assert page.get_by_label("Verification code").get_attribute("aria-invalid") == "true"
    shot(page, "verify-wrong-code")
    page.context.close()


def test_resend_button_counts_down(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    base, _double = site
    page = open_verify(browser, base)
    resend = page.get_by_role("button", name="Call me again")
    assert resend.is_disabled()
    first = page.locator("#v2fa-resend-wait").inner_text()
    seconds = int("".join(ch for ch in first if ch.isdigit()))
    assert 0 < seconds <= 30
    page.wait_for_function(
        f"(() => {{ const t = document.getElementById('v2fa-resend-wait').textContent; "
        f"const n = parseInt(t.replace(/[^0-9]/g, ''), 10); return n < {seconds}; }})()"
    )
    shot(page, "verify-resend-countdown")
    page.context.close()


def test_phone_width_has_no_horizontal_scroll(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    base, _double = site
    page = open_verify(browser, base, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = page.get_by_role("button", name="Verify").bounding_box()
    assert box is not None and box["height"] >= 44  # a thumb-sized target
    shot(page, "verify-phone")
    page.context.close()


def test_keyboard_only(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    base, double = site
    page = open_verify(browser, base)
    assert page.evaluate("document.activeElement.id") == "v2fa-code"  # focus starts on the code
    code = double.wait_for_code()
    page.keyboard.type(code)
    page.keyboard.press("Tab")  # the remember checkbox, then the button
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Verify"
    shot(page, "verify-keyboard-focus")
    page.keyboard.press("Enter")
    page.wait_for_url("**/account")
    page.context.close()


def test_spanish_and_dark_mode(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    base, double = site
    page = open_verify(browser, base, locale="es-ES", color_scheme="dark")
    assert page.get_by_role("heading", name="Confirme que es usted").is_visible()
    assert page.evaluate("document.documentElement.lang") == "es"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)"
    double.wait_for_calls(1)
    assert "Pulse cualquier tecla" in double.calls[0].says[0]
    shot(page, "verify-spanish-dark")
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations(browser: Any, site: tuple[str, SignalWireDouble], scheme: str) -> None:
    axe_js = pytest.importorskip("axe_playwright_python", reason="needs axe-playwright-python (the test extra)")
    script = Path(axe_js.__file__).with_name("axe.min.js")
    base, _double = site
    page = open_verify(browser, base, color_scheme=scheme)
    page.add_script_tag(path=str(script))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], result["violations"]
    page.context.close()


def test_dev_phone_shows_and_speaks_the_console_call(browser: Any, uvicorn_factory: Callable[..., Any]) -> None:
    app = uvicorn_factory("examples.starlette_app:app", {"VOICE2FA_SECRET_KEY": SECRET})  # console caller
    phone = new_page(browser, app.url)
    # Record what the page asks the browser to speak (headless Chromium has no audio out).
    phone.add_init_script(
        "window.__spoken = []; window.speechSynthesis.speak = (u) => window.__spoken.push(u.text);"
        "window.speechSynthesis.cancel = () => {};"
    )
    phone.goto("/voice2fa/dev/phone")
    assert phone.get_by_role("heading", name="Dev phone").is_visible()
    verify = phone.context.new_page()
    sign_in_and_open_account(verify)
    phone.wait_for_function("window.__spoken.some((t) => /\\d, \\d, \\d, \\d, \\d, \\d/.test(t))")
    transcript = phone.locator("#v2fa-calls").inner_text()
    assert "Press any key" in transcript and "Your verification code is" in transcript
    shot(phone, "dev-phone")
    spoken = phone.evaluate("window.__spoken")
    code = next("".join(c for c in t if c.isdigit()) for t in spoken if "code is" in t)
    verify.get_by_label("Verification code").fill(code)
    verify.get_by_role("button", name="Verify").click()
    verify.wait_for_url("**/account")
    phone.context.close()

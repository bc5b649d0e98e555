"""Phone enrolment in Chromium: the example's user without a phone adds one, confirmed by a
call through the SignalWire double; the phone page passes axe, light and dark, phone and
desktop. Screenshots: ``phone-page-<scheme>-<width>.png``, ``phone-page-error.png``,
``phone-confirm.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voice2fa_middleware.testing import SignalWireDouble

from .conftest import new_page, shot

pytestmark = pytest.mark.browser


def test_a_new_user_adds_a_phone_in_chromium(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    axe = pytest.importorskip("axe_playwright_python", reason="needs axe-playwright-python (the test extra)")
    script = str(Path(axe.__file__).with_name("axe.min.js"))
    base, double = site
    page = new_page(browser, base)
    page.goto("/login")
    page.get_by_label("Username").fill("new")
    page.get_by_label("Password").fill("new")
    page.get_by_role("button", name="Sign in").click()
    page.goto("/account")
    page.wait_for_url("**/voice2fa/phone?next=%2Faccount")
    assert page.get_by_role("heading", name="Your phone number").is_visible()
    for scheme in ("light", "dark"):
        for label, size in (("phone", {"width": 375, "height": 740}), ("desktop", {"width": 1280, "height": 800})):
            page.set_viewport_size(size)
            page.emulate_media(color_scheme=scheme)
            shot(page, f"phone-page-{scheme}-{label}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= size["width"], (scheme, label, width)
            page.add_script_tag(path=script)
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            assert result["violations"] == [], (scheme, label, result["violations"])
    page.emulate_media(color_scheme="light")
    field = page.get_by_label("Phone number")
    field.fill("+1 900 555 1234")
    page.get_by_role("button", name="Call me to confirm").click()
    alert = page.get_by_role("alert")
    assert "cannot call this kind of number" in alert.inner_text()
    assert page.get_by_label("Phone number").input_value() == "+1 900 555 1234"  # kept to correct it
    shot(page, "phone-page-error")
    page.get_by_label("Phone number").fill("(202) 555-0123")
    page.get_by_role("button", name="Call me to confirm").click()
    page.wait_for_url("**/voice2fa/verify?next=%2Faccount")
    assert page.get_by_role("heading", name="Confirm your number").is_visible()
    assert "0123" in page.locator(".v2fa-lead").inner_text()
    code = double.wait_for_code()
    assert double.calls[-1].to == "+12025550123"
    shot(page, "phone-confirm")
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/account")
    page.goto("/phone")
    assert "0123" in page.locator("main").inner_text()
    page.context.close()

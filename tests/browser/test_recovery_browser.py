"""Recovery codes in Chromium, on the Starlette example with the SignalWire double: a verified
user creates codes (download, print), signs in again and types one on the verify page instead
of the call's code; every page passes axe, light and dark, phone and desktop, and fits the
phone's width. Screenshots: ``recovery-<page>-<scheme>-<width>.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voice2fa_middleware.testing import SignalWireDouble

from .conftest import new_page, shot
from .test_browser import sign_in_and_open_account

pytestmark = pytest.mark.browser

SIZES = (("phone", {"width": 375, "height": 740}), ("desktop", {"width": 1280, "height": 800}))


def check_everywhere(page: Any, script: str, name: str) -> None:
    """axe finds nothing and nothing overflows, light and dark, phone and desktop."""
    for scheme in ("light", "dark"):
        for label, size in SIZES:
            page.set_viewport_size(size)
            page.emulate_media(color_scheme=scheme)
            shot(page, f"recovery-{name}-{scheme}-{label}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= size["width"], (name, scheme, label, width)
            page.add_script_tag(path=script)
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            assert result["violations"] == [], (name, scheme, label, result["violations"])
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_recovery_codes_in_chromium(browser: Any, site: tuple[str, SignalWireDouble]) -> None:
    axe = pytest.importorskip("axe_playwright_python", reason="needs axe-playwright-python (the test extra)")
    script = str(Path(axe.__file__).with_name("axe.min.js"))
    base, double = site
    page = new_page(browser, base, accept_downloads=True)
    sign_in_and_open_account(page)
    page.get_by_label("Verification code").fill(double.wait_for_code())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/account")
    page.get_by_role("link", name="Recovery codes").click()
    page.wait_for_url("**/voice2fa/recovery?next=/account")
    assert page.get_by_role("heading", name="Recovery codes").is_visible()
    check_everywhere(page, script, "page")
    page.get_by_role("button", name="Create new codes").click()
    codes = page.locator(".v2fa-codes code").all_inner_texts()
    assert len(codes) == 10
    assert "they will not be shown again" in page.get_by_role("status").inner_text()
    assert page.get_by_role("button", name="Print").is_visible()  # shown by its script
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    saved = Path(download.value.path()).read_text()
    assert all(code in saved for code in codes) and download.value.suggested_filename == "recovery-codes.txt"
    check_everywhere(page, script, "created")
    page.emulate_media(media="print")
    assert not page.get_by_role("button", name="Create new codes").is_visible()  # the codes alone on paper
    assert page.locator(".v2fa-codes").is_visible()
    page.emulate_media(media="screen")
    # Signed out and in again: the verify page offers a recovery code instead of the call's.
    page.get_by_role("button", name="Sign out").first.click()
    sign_in_and_open_account(page)
    page.get_by_text("Use a recovery code instead").click()
    field = page.get_by_label("Recovery code")
    assert field.is_visible()
    check_everywhere(page, script, "verify")
    field.fill("zzzzz-zzzzz")
    page.get_by_role("button", name="Use this code").click()
    assert "not right or was already used" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Recovery code").get_attribute("aria-invalid") == "true"
    check_everywhere(page, script, "use-error")
    page.get_by_label("Recovery code").fill(codes[0].upper())
    page.get_by_role("button", name="Use this code").click()
    assert "9 codes left" in page.get_by_role("status").inner_text()
    check_everywhere(page, script, "used")
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url("**/account")
    assert page.get_by_role("heading", name="Your account").is_visible()
    page.goto("/outbox")
    mail = page.locator("#outbox").inner_text()
    assert "recovery code was used" in mail and "New recovery codes were created" in mail
    page.context.close()

"""Writes docs/img/verify-page.png: the verify page of the Starlette example, in headless Chromium.

Run from the repository root: ``python docs/screenshot.py`` (needs the test extra and Chromium;
``VOICE2FA_CHROMIUM`` names another browser binary).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for name in [n for n in os.environ if n.startswith(("VOICE2FA_", "SIGNALWIRE_"))]:
    del os.environ[name]  # the console caller: no account needed

from examples.starlette_app import app  # noqa: E402
from voice2fa_middleware.testing import LiveServer  # noqa: E402

CHROMIUM = os.environ.get("VOICE2FA_CHROMIUM", "/usr/bin/chromium")
OUT = ROOT / "docs" / "img" / "verify-page.png"


def main() -> None:
    with LiveServer(app) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(base_url=server.url, viewport={"width": 560, "height": 760}).new_page()
        page.goto("/login")
        page.get_by_label("Username").fill("demo")
        page.get_by_label("Password").fill("demo")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        page.goto("/account")
        page.wait_for_url("**/voice2fa/verify**")
        page.wait_for_timeout(1500)  # the call's live status
        OUT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT), full_page=True)
        browser.close()
        assert httpx.get(server.url + "/").status_code == 200
    print(OUT)


if __name__ == "__main__":
    main()

"""What the browser tests share: Debian's Chromium driven by Playwright, headless, and the
screenshots they save to ``test-artifacts/`` (or ``$VOICE2FA_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from ..conftest import ROOT, example_env

CHROMIUM = os.environ.get("VOICE2FA_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("VOICE2FA_ARTIFACTS", ROOT / "test-artifacts"))
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (apt-get install chromium)")
        pytest.skip("Chromium not found: apt-get install chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def new_page(browser: Any, base: str, **context: Any) -> Any:
    ctx = browser.new_context(base_url=base, **{"bypass_csp": True, **context})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    return page


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def site(uvicorn_factory: Callable[..., Any]) -> Iterator[tuple[str, SignalWireDouble]]:
    """The Starlette example on uvicorn, calling through a SignalWire double: (URL, double)."""
    with SignalWireDouble() as double:
        port = port_for_later()
        app = uvicorn_factory("examples.starlette_app:app", example_env(double, port), port=port)
        yield app.url, double

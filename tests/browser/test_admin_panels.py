"""sqladmin and starlette-admin behind the middleware, driven in Chromium: sign in with the
panel's own login, verify, list; an edit submitted after the verification expired is offered
again after verifying and saved with one click; the panel's own delete script, while
unverified, gets a 401 and places no call, and works after verifying; CSV export; the panel's
logout ends the verification, and the next sign-in needs a new call. The examples are
examples/sqladmin_app.py and examples/starlette_admin_app.py, on uvicorn, with a SQLite file
the tests read.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from ..conftest import ServerProcess, example_env
from .conftest import new_page, shot

pytestmark = pytest.mark.browser
pytest.importorskip("sqladmin")


class Panel:
    """One admin panel's example on uvicorn, its double and its database file."""

    def __init__(self, server: ServerProcess, double: SignalWireDouble, db: Path) -> None:
        self.url, self.double, self.db = server.url, double, db

    def name_of(self, pk: int) -> str | None:
        # closing(): sqlite3's own "with" commits but does not close (a ResourceWarning on 3.13).
        with contextlib.closing(sqlite3.connect(self.db)) as con:
            row = con.execute("SELECT name FROM customer WHERE id = ?", (pk,)).fetchone()
        return row[0] if row else None


@pytest.fixture
def panel_factory(uvicorn_factory: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[Callable[[str], Panel]]:
    doubles: list[SignalWireDouble] = []

    def start(name: str) -> Panel:
        double = SignalWireDouble().start()
        doubles.append(double)
        port = port_for_later()
        db = tmp_path / f"{name}.db"
        env = {**example_env(double, port), "DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
        return Panel(uvicorn_factory(f"examples.{name}_app:app", env, port=port), double, db)

    yield start
    for double in doubles:
        double.stop()


def sign_in(page: Any) -> None:
    """The panel's own login form (both name their fields username and password)."""
    page.goto("/admin/login")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.locator("form button[type=submit], form input[type=submit]").first.click()


def enter_code(page: Any, panel: Panel, calls: int) -> None:
    """On the verify page: the code of call number ``calls``, typed and sent."""
    page.wait_for_url("**/voice2fa/verify?**")
    panel.double.wait_for_calls(calls)
    code = panel.double.calls[-1].code()
    assert code is not None
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify").click()


def expire(page: Any) -> None:
    """The verification ends on this browser (as after verified_max_age)."""
    page.context.clear_cookies(name="voice2fa_verified")


def cookie_names(page: Any) -> set[str]:
    return {c["name"] for c in page.context.cookies()}


def resubmit_after_verifying(page: Any, panel: Panel, calls: int) -> None:
    """The edit was kept: verify, then "Submit your changes again?" and one click."""
    page.wait_for_url("**/voice2fa/verify?**kept=1")
    assert "Your changes are kept" in page.content()
    enter_code(page, panel, calls)
    page.wait_for_url("**/voice2fa/resubmit")
    assert page.get_by_role("heading", name="Submit your changes again?").is_visible()
    shot(page, "admin-resubmit")
    page.locator("#v2fa-resubmit").click()
    page.wait_for_url("**/admin/customer/**")


# -- sqladmin ------------------------------------------------------------------------------------


def sqladmin_delete(page: Any, pk: int) -> Any:
    """The row's trash icon, then the modal's Delete (its script sends $.ajax DELETE); the answer."""
    page.locator(f'a[data-pk="{pk}"][data-bs-target="#modal-delete"]').click()
    # The modal's button gets its URL once the modal is shown (sqladmin's shown.bs.modal).
    page.wait_for_function(
        f"() => (document.getElementById('modal-delete-button').dataset.url || '').endsWith('pks={pk}')"
    )
    with page.expect_response(lambda r: f"/admin/customer/delete?pks={pk}" in r.url) as answer:
        page.locator("#modal-delete-button").click()
    return answer.value


def test_sqladmin_in_chromium(browser: Any, panel_factory: Callable[[str], Panel]) -> None:
    panel = panel_factory("sqladmin")
    page = new_page(browser, panel.url)
    sign_in(page)
    enter_code(page, panel, 1)
    page.wait_for_url("**/admin/")
    page.goto("/admin/customer/list")
    assert page.get_by_text("Ada Lovelace").is_visible()

    # An edit submitted after the verification expired (sqladmin posts it as multipart).
    page.goto("/admin/customer/edit/1")
    expire(page)
    page.fill("#name", "Ada Edited")
    page.locator("input[type=submit][value=Save]").click()
    resubmit_after_verifying(page, panel, 2)
    assert panel.name_of(1) == "Ada Edited"

    # Delete (jQuery $.ajax DELETE) while unverified: a 401 the script shows, and no call.
    page.goto("/admin/customer/list")
    expire(page)
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.accept()))
    answer = sqladmin_delete(page, 2)
    assert answer.status == 401
    body = answer.json()
    assert body["error"] == "voice2fa_required"
    assert body["verify_url"] == "/voice2fa/start?next=%2Fadmin%2Fcustomer%2Flist"
    assert len(panel.double.calls) == 2 and panel.name_of(2) == "Alan Turing"
    # Where the 401 says: the user's own visit starts the call; after verifying, the delete works.
    page.goto(body["verify_url"])
    enter_code(page, panel, 3)
    page.wait_for_url("**/admin/customer/list")
    with page.expect_navigation():  # sqladmin's script goes to the list the DELETE answers with
        answer = sqladmin_delete(page, 2)
    assert answer.status == 200
    assert panel.name_of(2) is None
    assert any("voice2fa_required" in a for a in alerts)

    # CSV export, verified.
    page.goto("/admin/customer/list")
    page.get_by_text("Export").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    csv = Path(download.value.path()).read_text()
    assert "Ada Edited" in csv and "Alan Turing" not in csv

    # sqladmin's logout (GET) ends the verification; the next sign-in needs a new call.
    page.goto("/admin/logout")
    page.wait_for_url("**/admin/login")
    assert "voice2fa_verified" not in cookie_names(page)
    sign_in(page)
    enter_code(page, panel, 4)
    page.wait_for_url("**/admin/")
    assert len(panel.double.calls) == 4
    page.context.close()


# -- starlette-admin -------------------------------------------------------------------------------


def test_starlette_admin_in_chromium(browser: Any, panel_factory: Callable[[str], Panel]) -> None:
    pytest.importorskip("starlette_admin", reason="starlette-admin 1.0 needs Python 3.11")
    panel = panel_factory("starlette_admin")
    page = new_page(browser, panel.url)
    sign_in(page)
    enter_code(page, panel, 1)
    page.wait_for_url("**/admin/")
    page.goto("/admin/customer/list")
    assert page.get_by_text("Ada Lovelace").first.is_visible()

    # An edit submitted after the verification expired (multipart, with its CSRF token).
    page.goto("/admin/customer/edit?pk=1")
    expire(page)
    page.fill("input[name=name]", "Ada Edited")
    page.locator("form[enctype='multipart/form-data'] button.btn-primary").first.click()
    resubmit_after_verifying(page, panel, 2)
    assert panel.name_of(1) == "Ada Edited"

    # Delete (fetch POST to its action API) while unverified: a 401, and no call.
    page.goto("/admin/customer/list")
    expire(page)

    def delete_alan() -> Any:
        row = page.locator("tr", has_text="Alan Turing")
        row.locator('[data-sa-name="delete"]').first.dispatch_event("click")
        with page.expect_response(lambda r: r.request.method == "POST" and "/admin/" in r.url) as answer:
            page.get_by_role("button", name="Yes, delete").click()
        return answer.value

    answer = delete_alan()
    assert answer.status == 401
    # Playwright cannot read the body of a fetch its page never reads: the page's script asks again.
    status, body = page.evaluate(
        "async (u) => { const r = await fetch(u, {method: 'POST'}); return [r.status, await r.json()]; }", answer.url
    )
    assert status == 401
    assert body["error"] == "voice2fa_required" and body["verify_url"].startswith("/voice2fa/start?next=")
    assert len(panel.double.calls) == 2 and panel.name_of(2) == "Alan Turing"
    page.goto(body["verify_url"])
    enter_code(page, panel, 3)
    page.wait_for_url("**/admin/customer/list**")
    answer = delete_alan()
    assert answer.status == 200
    assert panel.name_of(2) is None

    # CSV export (a native form POST), verified.
    page.goto("/admin/customer/list")
    page.locator('[data-sa-name="export"]').first.click()
    with page.expect_download() as download:
        page.locator("#modal-action").get_by_role("button", name="Export").click()
    csv = Path(download.value.path()).read_text()
    assert "Ada Edited" in csv

    # Our Sign out (a POST starlette-admin's CSRF middleware checks: signout_fields gives its token).
    expire(page)
    page.goto("/admin/customer/list")
    page.wait_for_url("**/voice2fa/verify?**")
    panel.double.wait_for_calls(4)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/admin/login**")  # signed out of the panel; was 403 "CSRF token missing"
    assert not {"voice2fa_verified", "voice2fa_pending"} & cookie_names(page)

    # starlette-admin's own logout (POST with its token) ends the verification; a new sign-in, a new call.
    sign_in(page)
    enter_code(page, panel, 4)  # the challenge still live for this user: its call, no new one
    page.wait_for_url("**/admin/")
    page.evaluate("document.querySelector('form[action$=\"/admin/logout\"]').requestSubmit()")
    page.wait_for_url("**/admin/login**")
    assert "voice2fa_verified" not in cookie_names(page)
    sign_in(page)
    enter_code(page, panel, 5)
    page.wait_for_url("**/admin/")
    assert len(panel.double.calls) == 5
    page.context.close()

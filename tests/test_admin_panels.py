"""Admin panels (sqladmin, starlette-admin) behind the middleware, without a browser: the
examples' sessions are seen by identify, their login pages work anonymously, their logout ends
the verification and a new sign-in needs a new call; admin forms posted as multipart (text
fields only) are kept for resubmission. The browser half is tests/browser/test_admin_panels.py.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import Harness, ServerProcess, csrf_of, example_env

pytest.importorskip("sqladmin")

# starlette-admin 1.0 needs Python 3.11: on 3.10 its example is not tested (and not installed).
PANELS = [
    "sqladmin",
    pytest.param(
        "starlette_admin",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("starlette_admin") is None, reason="starlette-admin 1.0 needs Python 3.11"
        ),
    ),
]


@pytest.fixture(params=PANELS)
def panel(request: pytest.FixtureRequest, uvicorn_factory: Callable[..., ServerProcess]) -> Iterator[tuple[str, Any]]:
    """(name, (server, double)): the panel's example on uvicorn, calling through a double."""
    with SignalWireDouble() as double:
        port = port_for_later()
        server = uvicorn_factory(f"examples.{request.param}_app:app", example_env(double, port), port=port)
        yield request.param, (server, double)


def sign_in(name: str, client: httpx.Client) -> None:
    """The panel's own login, demo / demo (starlette-admin's form carries its CSRF token)."""
    page = client.get("/admin/login")
    assert page.status_code == 200, page.text
    form = {"username": "demo", "password": "demo"}
    if name == "starlette_admin":
        form["csrftoken"] = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post("/admin/login", data=form)
    assert done.status_code in (302, 303), done.text


def sign_out(name: str, client: httpx.Client) -> httpx.Response:
    if name == "sqladmin":
        return client.get("/admin/logout")
    return client.post("/admin/logout", data={"csrftoken": client.cookies["starlette_admin_csrftoken"]})


def verify(client: httpx.Client, double: SignalWireDouble, calls: int) -> None:
    """Open /admin/ (signed in, unverified): the verify page; type the code of call ``calls``."""
    asked = client.get("/admin/")
    assert asked.status_code == 303 and asked.headers["location"] == "/voice2fa/verify?next=%2Fadmin%2F"
    page = client.get(asked.headers["location"])
    double.wait_for_calls(calls)
    code = double.calls[-1].code()
    assert code is not None
    done = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text), "next": "/admin/"})
    assert done.status_code == 303 and done.headers["location"] == "/admin/", done.text


def test_identify_sees_the_panels_session_and_logout_ends_the_verification(panel: tuple[str, Any]) -> None:
    name, (server, double) = panel
    with httpx.Client(base_url=server.url, timeout=20) as c:
        # Anonymous: the panel's own login page (200, not a 500 for a session identify cannot see).
        assert c.get("/admin/login").status_code == 200
        anonymous = c.get("/admin/")
        assert anonymous.status_code in (302, 303) and "/admin/login" in anonymous.headers["location"]
        assert double.calls == []
        sign_in(name, c)
        verify(c, double, 1)  # identify saw the session the panel's login wrote: a challenge
        assert c.get("/admin/").status_code == 200
        assert c.get("/admin/customer/list").status_code == 200
        old_verified = c.cookies["voice2fa_verified"]
        out = sign_out(name, c)
        assert out.status_code in (302, 303), out.text
        assert 'voice2fa_verified=""' in out.headers.get("set-cookie", "")  # the verification ended
        sign_in(name, c)
        # A new sign-in needs a new call, even with the old verified cookie put back (session binding).
        c.cookies.set("voice2fa_verified", old_verified, domain="127.0.0.1")
        verify(c, double, 2)
        assert c.get("/admin/customer/list").status_code == 200
    assert len(double.calls) == 2


def test_our_sign_out_works_with_each_panels_logout(panel: tuple[str, Any]) -> None:
    name, (server, _double) = panel
    with httpx.Client(base_url=server.url, timeout=20) as c:
        sign_in(name, c)
        page = c.get("/voice2fa/verify?next=/admin/").text
        if name == "sqladmin":  # a GET route: a link
            assert '<a class="v2fa-link" href="/admin/logout?voice2fa=signout">' in page
            out = c.get("/admin/logout?voice2fa=signout")
        else:  # a POST checked by starlette-admin's CSRF middleware: its token in our form
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
            assert fields["csrftoken"] == c.cookies["starlette_admin_csrftoken"]
            out = c.post("/admin/logout?voice2fa=signout", data={"csrftoken": fields["csrftoken"]})
        assert out.status_code in (302, 303), out.text  # was 403 "CSRF token missing" for starlette-admin
        assert 'voice2fa_pending=""' in out.headers.get("set-cookie", "")
        assert c.get("/admin/").status_code in (302, 303)
        assert "/admin/login" in c.get("/admin/").headers["location"]  # signed out of the panel too


def test_a_panels_script_request_gets_a_401_and_places_no_call(panel: tuple[str, Any]) -> None:
    name, (server, double) = panel
    with httpx.Client(base_url=server.url, timeout=20) as c:
        sign_in(name, c)
        headers = {"sec-fetch-mode": "cors", "referer": f"{server.url}/admin/customer/list"}
        if name == "sqladmin":  # jQuery's $.ajax DELETE
            r = c.delete("/admin/customer/delete?pks=1", headers={**headers, "x-requested-with": "XMLHttpRequest"})
        else:  # fetch POST to its API
            r = c.post("/admin/api/customer/action?name=delete&pks=1", headers=headers)
        assert r.status_code == 401
        assert r.json()["verify_url"] == "/voice2fa/start?next=%2Fadmin%2Fcustomer%2Flist"
    assert double.calls == []


# -- multipart forms (every admin panel's edit form) -----------------------------------------------


def test_a_multipart_form_with_text_fields_only_is_kept(harness: Harness) -> None:
    with harness.client() as c:
        form = {"name": "New name", "email": "new@example.com", "note": "ünï\r\ncode & more", "empty": ""}
        # Built as browsers send it (httpx sends multipart only with files).
        posted = c.send(_multipart_request(c, "/admin/customer/edit/1", form, harness.url))
        assert posted.status_code == 303 and posted.headers["location"].endswith("&kept=1"), posted.headers
        page = c.get(posted.headers["location"])
        harness.double.wait_for_calls(1)
        code = harness.double.calls[0].code()
        assert code is not None
        done = harness.verify(c, code, csrf_of(page.text), next_url="/admin/customer/edit/1")
        assert done.headers["location"] == "/voice2fa/resubmit"
        offer = c.get("/voice2fa/resubmit").text
        assert 'action="/admin/customer/edit/1" enctype="multipart/form-data"' in offer
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', offer))
        assert hidden == {**form, "note": "ünï\r\ncode &amp; more"}


def test_a_multipart_form_with_a_file_input_is_not_kept(harness: Harness) -> None:
    with harness.client() as c:
        # An empty file input is still a file part (filename=""): not kept.
        r = c.post("/admin/customer/edit/1", data={"name": "x"}, files={"photo": ("", b"", "application/octet-stream")})
        assert r.status_code == 303 and r.headers["location"].endswith("&unsaved=1")
        assert "voice2fa_resubmit" not in r.headers.get("set-cookie", "")


def _multipart_request(client: httpx.Client, path: str, form: dict[str, str], base: str) -> httpx.Request:
    boundary = "----WebKitFormBoundaryv2faTest0123"
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode() + b"\r\n"
            for k, v in form.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}", "referer": f"{base}{path}"}
    return client.build_request("POST", path, content=body, headers=headers)

"""Requests that are not page visits (S30), API clients without cookies, sign-out forms, and
proofs bound to the app's sign-in session: what admin panels and API clients need."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from starlette.requests import HTTPConnection

from voice2fa_middleware import Identity

from .conftest import PHONES, Harness, csrf_of


async def bearer_identify(conn: HTTPConnection) -> Identity | None:
    """An API's identify: the user from a bearer token (here the token is the user's name)."""
    auth = conn.headers.get("authorization", "")
    user = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else conn.cookies.get("test_user")
    return Identity(user, PHONES[user]) if user in PHONES else None


def test_a_script_request_gets_a_401_and_places_no_call(harness: Harness) -> None:
    with harness.client() as c:
        for headers in (
            {"sec-fetch-mode": "cors", "sec-fetch-dest": "empty", "referer": f"{harness.url}/page?tab=2"},
            {"x-requested-with": "XMLHttpRequest", "referer": f"{harness.url}/page?tab=2"},
        ):
            for method in ("GET", "POST", "DELETE"):
                r = c.request(method, "/admin/customer/1", headers=headers)
                assert r.status_code == 401, (method, headers, r.text)
                body = r.json()
                assert body["error"] == "voice2fa_required"
                assert body["verify_url"] == "/voice2fa/start?next=%2Fpage%3Ftab%3D2"
        assert harness.double.calls == []  # was a call per request, and a 303 the script could not use
        # A referer on another site is not where the user is sent back to.
        r = c.get("/admin/x", headers={"sec-fetch-mode": "cors", "referer": "https://evil.example/page"})
        assert r.json()["verify_url"] == "/voice2fa/start?next=%2F"
        # The page leads the user there: their own visit starts the call.
        start = c.get("/voice2fa/start?next=/page%3Ftab%3D2")
        assert start.status_code == 303 and start.headers["location"].startswith("/voice2fa/verify?next=")
        harness.double.wait_for_calls(1)
        # A navigation is a page visit whatever else it sends.
        nav = c.get("/admin/y", headers={"sec-fetch-mode": "navigate", "accept": "application/json"})
        assert nav.status_code == 303


def test_start_sends_a_verified_user_straight_on(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        assert harness.verify(c, code, csrf).status_code == 303
        r = c.get("/voice2fa/start?next=/page")
        assert r.status_code == 303 and r.headers["location"] == "/page"
        anonymous = httpx.get(f"{harness.url}/voice2fa/start?next=//evil.example")
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/"
    assert len(harness.double.calls) == 1


def test_a_bearer_client_with_accept_any_gets_the_json_answer(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(middleware={"identify": bearer_identify})
    r = httpx.get(f"{h.url}/account", headers={"authorization": "Bearer alice", "accept": "*/*"})
    assert r.status_code == 401 and r.json()["error"] == "voice2fa_required"  # was a 303 to a page
    # Basic auth is a browser's: still a page.
    basic = httpx.get(f"{h.url}/account", cookies={"test_user": "bob"}, headers={"authorization": "Basic eDp5"})
    assert basic.status_code == 303


def test_an_api_client_that_keeps_no_cookies_verifies_with_headers(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(middleware={"identify": bearer_identify})
    auth = {"authorization": "Bearer alice", "accept": "application/json"}

    def fresh() -> httpx.Client:  # a new client each time: no cookie is ever sent back
        return httpx.Client(base_url=h.url, timeout=20)

    with fresh() as c:
        first = c.get("/account", headers=auth)
    assert first.status_code == 401
    token = first.json()["challenge_token"]
    h.double.wait_for_calls(1)
    code = h.double.calls[0].code()
    assert code is not None
    with_challenge = {**auth, "x-voice2fa-challenge": token}
    with fresh() as c:
        status = c.get("/voice2fa/verify/status", headers=with_challenge)
    assert status.status_code == 200 and status.json()["attempts_left"] == 5
    with fresh() as c:
        # No CSRF token: the header is no ambient credential (it was a 403 csrf).
        done = c.post("/voice2fa/verify", json={"code": code}, headers=with_challenge)
    assert done.status_code == 200, done.text
    proof = done.json()["proof_token"]
    assert done.json()["proof_header"] == "X-Voice2FA-Proof"
    with fresh() as c:
        assert c.get("/account", headers={**auth, "x-voice2fa-proof": proof}).text == "account: secret page"
        assert c.get("/account", headers={**auth, "x-voice2fa-proof": proof + "x"}).status_code == 401
    # Another user's bearer with alice's proof is not verified.
    with fresh() as c:
        bob = c.get(
            "/account", headers={"authorization": "Bearer bob", "accept": "application/json", "x-voice2fa-proof": proof}
        )
    assert bob.status_code == 401


def test_a_form_posted_while_unverified_is_offered_again_after_verifying(harness: Harness) -> None:
    with harness.client() as c:
        form = {"name": "New name", "csrf": "app-token-1", "note": "ünïcode & more"}
        posted = c.post("/admin/customer/edit/1", data=form, headers={"referer": f"{harness.url}/admin/customer/1"})
        assert posted.status_code == 303
        assert posted.headers["location"].endswith("&kept=1")
        assert "next=%2Fadmin%2Fcustomer%2F1" in posted.headers["location"]
        page = c.get(posted.headers["location"])
        assert "Your changes are kept" in page.text
        harness.double.wait_for_calls(1)
        code = harness.double.calls[0].code()
        assert code is not None
        done = harness.verify(c, code, csrf_of(page.text), next_url="/admin/customer/1")
        assert done.status_code == 303 and done.headers["location"] == "/voice2fa/resubmit"
        offer = c.get("/voice2fa/resubmit")
        assert offer.status_code == 200 and "Submit your changes again?" in offer.text
        assert 'action="/admin/customer/edit/1"' in offer.text and 'method="post"' in offer.text
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', offer.text))
        assert hidden == {"name": "New name", "csrf": "app-token-1", "note": "ünïcode &amp; more"}
        assert 'href="/admin/customer/1"' in offer.text  # discard: back to the form's page
        # Shown once: the kept copy is gone, and nothing was replayed by itself.
        assert c.get("/voice2fa/resubmit").status_code == 303


def test_a_form_that_cannot_be_kept_is_said_to_be_unsaved(harness: Harness) -> None:
    with harness.client() as c:
        big = c.post("/admin/customer/edit/1", data={"text": "x" * 5000}, headers={"referer": f"{harness.url}/admin"})
        assert big.status_code == 303 and big.headers["location"].endswith("&unsaved=1")
        assert "voice2fa_resubmit" not in big.headers.get("set-cookie", "")
        assert "Your changes were not saved" in c.get(big.headers["location"]).text
        upload = c.post("/admin/upload", files={"f": ("a.txt", b"data")})
        assert upload.status_code == 303 and upload.headers["location"].endswith("&unsaved=1")


def test_another_users_kept_form_is_never_offered(harness: Harness) -> None:
    with harness.client() as alice:
        posted = alice.post("/admin/edit", data={"a": "1"})
        kept = posted.cookies.get("voice2fa_resubmit")
        assert kept
    with harness.client("bob") as bob:
        csrf, code = harness.challenge(bob)
        bob.cookies.set("voice2fa_resubmit", kept)
        done = harness.verify(bob, code, csrf)
        assert done.headers["location"] == "/account"  # alice's form is not bob's


def test_sign_out_by_get_and_with_the_apps_csrf_fields(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(logout_url="/logout", logout_method="GET")
    with h.client() as c:
        assert c.get("/account").status_code == 303
        page = c.get("/voice2fa/verify?next=/account").text
        assert '<a class="v2fa-link" href="/logout?voice2fa=signout">' in page and 'action="/logout' not in page
    fields = harness_factory(
        logout_url="/logout", middleware={"signout_fields": lambda request: {"csrf_token_app": "abc<&"}}
    )
    with fields.client() as c:
        assert c.get("/account").status_code == 303
        page = c.get("/voice2fa/verify?next=/account").text
        assert '<input type="hidden" name="csrf_token_app" value="abc&lt;&amp;">' in page


def test_a_proof_bound_to_a_session_needs_a_new_call_after_a_new_sign_in(
    harness_factory: Callable[..., Harness],
) -> None:
    async def with_session(conn: HTTPConnection) -> Identity | None:
        user = conn.cookies.get("test_user")
        if user not in PHONES:
            return None
        return Identity(user, PHONES[user], session=conn.cookies.get("test_session", ""))

    h = harness_factory(middleware={"identify": with_session})
    with h.client() as c:
        c.cookies.set("test_session", "s1")
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303
        assert c.get("/account").status_code == 200
        c.cookies.set("test_session", "s2")  # signed out and in again: the verified cookie stays
        assert c.get("/account").status_code == 303  # was 200 with no call
    # Without a session, proofs bind as before: a proof signed for three fields still works.
    from voice2fa_middleware._core.crypto import Keyring

    from .conftest import SECRET

    old = Keyring([SECRET]).sign_proof("verified", ("alice", PHONES["alice"], ""))
    new = Keyring([SECRET]).sign_proof("verified", Identity("alice", PHONES["alice"]))
    keys = Keyring([SECRET])
    assert keys.proof_time("verified", Identity("alice", PHONES["alice"]), old, 60) is not None
    assert keys.proof_time("verified", ("alice", PHONES["alice"], ""), new, 60) is not None
    assert keys.proof_time("verified", Identity("alice", PHONES["alice"], session="s"), old, 60) is None

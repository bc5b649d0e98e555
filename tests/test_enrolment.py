"""Phone enrolment: a number is confirmed by a call before the app saves it; users without a
phone; changing the number (step-up, old proofs end); enrolment budgets; the examples."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import HTTPConnection

from voice2fa_middleware import Identity, Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware._core.rules import as_identity
from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import SECRET, Harness, csrf_of, example_env, wrong_for


class Accounts:
    """The app's users and their saved numbers; ``on_phone_confirmed`` writes here."""

    def __init__(self, phones: dict[str, str | None]) -> None:
        self.phones = phones
        self.saved: list[tuple[str, str]] = []
        self.fail = False

    async def identify(self, conn: HTTPConnection) -> Identity | None:
        user = conn.cookies.get("test_user")
        if user not in self.phones:
            return None
        return Identity(user, self.phones[user], conn.cookies.get("test_version", ""))

    async def save(self, user_id: str, e164: str) -> None:
        if self.fail:
            raise RuntimeError("the database is down")
        self.saved.append((user_id, e164))
        self.phones[user_id] = e164


@pytest.fixture
def accounts() -> Accounts:
    return Accounts({"nina": None, "omar": None, "alice": "+12025550143"})


@pytest.fixture
def enrol_harness(harness_factory: Callable[..., Harness], accounts: Accounts) -> Callable[..., Harness]:
    def make(**settings: Any) -> Harness:
        middleware = {"identify": accounts.identify, "on_phone_confirmed": accounts.save}
        return harness_factory(middleware=middleware, **settings)

    return make


def enrol(h: Harness, c: httpx.Client, number: str, next_url: str = "/account") -> httpx.Response:
    """Open the phone page and post ``number``; the response to the post."""
    page = c.get("/voice2fa/phone", params={"next": next_url})
    assert page.status_code == 200, page.text
    return c.post("/voice2fa/phone", data={"phone": number, "csrf_token": csrf_of(page.text), "next": next_url})


def type_code(h: Harness, c: httpx.Client, calls_before: int, **extra: str) -> httpx.Response:
    """Follow to the verify page, wait for the call, type its code."""
    h.double.wait_for_calls(calls_before + 1)
    code = h.double.calls[-1].code()
    assert code is not None
    page = c.get("/voice2fa/verify?next=/account")
    assert page.status_code == 200
    form = {"code": code, "csrf_token": csrf_of(page.text), "next": "/account", **extra}
    return c.post("/voice2fa/verify", data=form)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_user_without_a_phone_enrols_and_then_passes(
    store: str, harness_factory: Callable[..., Harness], accounts: Accounts
) -> None:
    middleware = {"identify": accounts.identify, "on_phone_confirmed": accounts.save}
    h = harness_factory(store=store, middleware=middleware)
    with h.client("nina") as c:
        r = c.get("/account")
        assert r.status_code == 303 and r.headers["location"] == "/voice2fa/phone?next=%2Faccount"
        assert not h.double.calls  # nobody to call yet
        page = c.get(r.headers["location"])
        assert page.status_code == 200
        assert 'type="tel"' in page.text and 'autocomplete="tel"' in page.text and "Your phone number" in page.text
        posted = c.post(
            "/voice2fa/phone", data={"phone": "(202) 555-0150", "csrf_token": csrf_of(page.text), "next": "/account"}
        )
        assert posted.status_code == 303 and posted.headers["location"] == "/voice2fa/verify?next=%2Faccount"
        [call] = h.double.wait_for_calls(1)
        assert call.to == "+12025550150"  # the national form, normalised to E.164
        verify_page = c.get(posted.headers["location"])
        assert "Confirm your number" in verify_page.text and "0150" in verify_page.text
        assert not accounts.saved
        code = call.code()
        assert code is not None
        token = csrf_of(verify_page.text)
        wrong = c.post("/voice2fa/verify", data={"code": wrong_for(code), "csrf_token": token, "next": "/account"})
        assert wrong.status_code == 400 and not accounts.saved  # never saved without the code
        done = c.post("/voice2fa/verify", data={"code": code, "csrf_token": token, "next": "/account"})
        assert done.status_code == 303 and done.headers["location"] == "/account"
        assert accounts.saved == [("nina", "+12025550150")]
        assert c.get("/account").text == "account: secret page"  # verified for the new number
        assert len(h.double.calls) == 1
    kinds = [e.kind for e in h.events]
    assert "phone_confirmed" in kinds and "verified" in kinds
    assert all("+12025550150" not in str(e.detail) and code not in str(e.detail) for e in h.events)


def test_bad_numbers_are_refused_with_a_clear_message_and_no_call(enrol_harness: Callable[..., Harness]) -> None:
    h = enrol_harness()
    with h.client("nina") as c:
        for number, status, text in [
            ("+19005551234", 400, "cannot call this kind of number"),  # premium rate
            ("+33612345678", 400, "does not place calls to that country"),
            ("not a number", 400, "That is not a phone number"),
            ("+1555123", 400, "That is not a phone number"),
            ("9" * 60, 400, "That is not a phone number"),
            ("1" * 5000, 400, "That is not a phone number"),  # past our field size
        ]:
            r = enrol(h, c, number)
            assert r.status_code == status, (number, r.text[:200])
            assert text in r.text and 'aria-invalid="true"' in r.text
        huge = c.post("/voice2fa/phone", data={"phone": "1" * 40_000, "csrf_token": "x"})
        assert huge.status_code == 413
        page = c.get("/voice2fa/phone", headers={"accept": "application/json"})
        body = page.json()
        assert body["phone"] is None and body["submit_url"] == "/voice2fa/phone" and body["example"].startswith("+1")
        j = c.post("/voice2fa/phone", json={"phone": "+19005551234", "csrf_token": body["csrf_token"]})
        assert j.status_code == 400 and j.json()["error"] == "number_type"
    assert not h.double.calls and not h.double.create_requests


def test_the_phone_form_needs_its_own_users_token_from_this_site(enrol_harness: Callable[..., Harness]) -> None:
    h = enrol_harness()
    with h.client("omar") as omar:
        omar_token = csrf_of(omar.get("/voice2fa/phone").text)
    with h.client("nina") as c:
        assert c.post("/voice2fa/phone", data={"phone": "+12025550150"}).status_code == 403
        assert c.post("/voice2fa/phone", data={"phone": "+12025550150", "csrf_token": omar_token}).status_code == 403
        assert c.post("/voice2fa/phone", data={"phone": "+12025550150", "csrf_token": "a" * 600}).status_code == 403
        token = csrf_of(c.get("/voice2fa/phone").text)
        cross = c.post(
            "/voice2fa/phone",
            data={"phone": "+12025550150", "csrf_token": token},
            headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        )
        assert cross.status_code == 403
    with h.client(None) as anonymous:
        assert anonymous.get("/voice2fa/phone").status_code == 303  # to the app's home page
        assert anonymous.get("/voice2fa/phone", headers={"accept": "application/json"}).status_code == 401
        assert anonymous.post("/voice2fa/phone", data={"phone": "+12025550150", "csrf_token": token}).status_code == 303
    assert not h.double.create_requests


def test_changing_the_number_needs_a_fresh_check_and_ends_the_old_proofs(
    enrol_harness: Callable[..., Harness], accounts: Accounts
) -> None:
    h = enrol_harness()
    with h.client("alice") as c:
        step_up = c.get("/voice2fa/phone?next=/account")
        assert step_up.status_code == 303 and step_up.headers["location"].startswith("/voice2fa/verify?next=")
        assert "phone" in step_up.headers["location"]
        h.double.wait_for_calls(1)
        assert h.double.calls[0].to == "+12025550143"  # the current number first
        assert type_code(h, c, 0).status_code == 303
        old_proof = c.cookies["voice2fa_verified"]
        assert c.get("/account").status_code == 200
        r = enrol(h, c, "+12025550177")
        assert r.status_code == 303
        same = enrol(h, c, "+1 202 555 0143")
        assert same.status_code == 400 and "already your number" in same.text
        assert type_code(h, c, 1).status_code == 303
        assert h.double.calls[1].to == "+12025550177"
        assert accounts.phones["alice"] == "+12025550177"
        assert c.get("/account").status_code == 200  # the new proof, for the new number
    with h.client("alice") as other:
        other.cookies.set("voice2fa_verified", old_proof)
        assert other.get("/account").status_code == 303  # bound to the old number: ended
        h.clock.offset = 400  # past enrol_fresh_within: a new check before another change
    with h.client("alice") as c:
        c.cookies.set("voice2fa_verified", old_proof)
        assert c.get("/voice2fa/phone").status_code == 303


def test_enrolment_budgets_are_their_own_and_stricter(enrol_harness: Callable[..., Harness]) -> None:
    h = enrol_harness(enrol_calls_per_user_per_hour=2)
    with h.client("nina") as c:
        assert enrol(h, c, "+12025550161").status_code == 303
        assert enrol(h, c, "+12025550161").status_code == 303  # the same number: the live call, not a new one
        assert enrol(h, c, "+12025550162").status_code == 303
        refused = enrol(h, c, "+12025550163")
        assert refused.status_code == 429 and "retry-after" in refused.headers
    assert [call.to for call in h.double.calls] == ["+12025550161", "+12025550162"]
    budgets = [e.detail.get("budget") for e in h.events if e.kind == "budget_exhausted"]
    assert budgets == ["enrol_user"]
    h2 = enrol_harness(enrol_calls_per_phone_per_hour=1)
    with h2.client("nina") as a, h2.client("omar") as b:
        assert enrol(h2, a, "+12025550164").status_code == 303
        assert enrol(h2, b, "+12025550164").status_code == 429  # another account, the same number


def test_many_accounts_confirming_one_number_raise_an_audit_event(enrol_harness: Callable[..., Harness]) -> None:
    h = enrol_harness(shared_phone_accounts=2)
    for n, user in enumerate(["nina", "omar"]):
        with h.client(user) as c:
            assert enrol(h, c, "+12025550170").status_code == 303
            assert type_code(h, c, n).status_code == 303
    shared = [e for e in h.events if e.kind == "phone_shared"]
    assert len(shared) == 1 and shared[0].user_id == "omar" and shared[0].detail["accounts"] == 2


def test_a_failing_hook_grants_nothing(enrol_harness: Callable[..., Harness], accounts: Accounts) -> None:
    h = enrol_harness()
    accounts.fail = True
    with h.client("nina") as c:
        assert enrol(h, c, "+12025550180").status_code == 303
        r = type_code(h, c, 0)
        assert r.status_code == 500 and "could not be saved" in r.text
        assert "voice2fa_verified" not in c.cookies
        assert c.get("/account").status_code == 303


def test_a_changed_account_cancels_the_enrolment(enrol_harness: Callable[..., Harness], accounts: Accounts) -> None:
    h = enrol_harness()
    with h.client("nina") as c:
        assert enrol(h, c, "+12025550181").status_code == 303
        c.cookies.set("test_version", "password-changed")  # the app revoked what was verified
        assert type_code(h, c, 0).status_code == 409
        assert not accounts.saved


def test_the_json_twin(enrol_harness: Callable[..., Harness], accounts: Accounts) -> None:
    h = enrol_harness()
    with h.client("nina", headers={"accept": "application/json"}) as c:
        r = c.get("/account")
        assert r.status_code == 401 and r.json() == {
            "error": "voice2fa_phone_required",
            "enrol_url": "/voice2fa/phone?next=%2Faccount",
        }
        form = c.get(r.json()["enrol_url"]).json()
        started = c.post(form["submit_url"], json={"phone": "+12025550190", "csrf_token": form["csrf_token"]})
        assert started.status_code == 202 and started.json()["status"] == "calling"
        body = started.json()
        [call] = h.double.wait_for_calls(1)
        assert c.get(body["status_url"]).json()["calls_left"] == 2
        done = c.post(body["verify_url"], json={"code": call.code(), "csrf_token": body["csrf_token"]})
        assert done.status_code == 200 and done.json()["verified"] is True
        assert accounts.saved == [("nina", "+12025550190")]


def test_phoneless_users_are_refused_without_a_hook(
    harness_factory: Callable[..., Harness], accounts: Accounts
) -> None:
    h = harness_factory(middleware={"identify": accounts.identify})
    with h.client("nina") as c:
        r = c.get("/account")
        assert r.status_code == 403 and "no phone number" in r.text
        assert c.get("/account", headers={"accept": "application/json"}).json()["error"] == "no_phone"
        assert c.get("/voice2fa/phone").status_code == 404  # no phone page without a hook
    with h.client(None) as anonymous:
        assert anonymous.get("/account").text == "account: secret page"  # anonymous: the app's job
    assert not h.double.create_requests


def test_phoneless_users_pass_only_when_allowed_and_it_is_logged(
    harness_factory: Callable[..., Harness], accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="voice2fa"):
        h = harness_factory(middleware={"identify": accounts.identify}, phoneless="allow")
    assert any("phoneless='allow'" in r.getMessage() for r in caplog.records)
    with h.client("nina") as c:
        assert c.get("/account").text == "account: secret page"
    with h.client("alice") as c:
        assert c.get("/account").status_code == 303  # users with a phone still verify


def test_enrol_without_a_hook_does_not_start() -> None:
    settings = Voice2FASettings(secret_key=SECRET, phoneless="enrol")
    middleware = Voice2FAMiddleware(lambda scope, receive, send: None, identify=lambda conn: None, settings=settings)
    assert "needs on_phone_confirmed" in middleware._failure  # type: ignore[attr-defined]


def test_identify_may_say_signed_in_without_a_phone() -> None:
    assert as_identity(("u", None)) == Identity("u", None, "")
    assert as_identity(Identity("u", None, "v")) == Identity("u", None, "v")
    assert as_identity(("u", 5)) == Identity("u", "5", "")
    assert as_identity(("u", "")) == Identity("u", None, "")  # an empty phone is no phone
    assert as_identity(Identity("u", "", "v")) == Identity("u", None, "v")
    assert as_identity(None) is None
    with pytest.raises(TypeError):
        as_identity((None, "+12025550143"))


@pytest.mark.parametrize("target", ["examples.starlette_app:app", "examples.fastapi_app:app"])
def test_examples_phone_page_new_user_and_number_change(target: str, uvicorn_factory: Callable[..., Any]) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        app = uvicorn_factory(target, example_env(double, port), port=port)
        with httpx.Client(base_url=app.url, timeout=20) as new:
            assert new.post("/login", data={"username": "new", "password": "new"}).status_code == 303
            assert "not set" in new.get("/phone").text
            r = new.get("/account")
            assert r.status_code == 303 and r.headers["location"] == "/voice2fa/phone?next=%2Faccount"
            page = new.get(r.headers["location"])
            posted = new.post(
                "/voice2fa/phone", data={"phone": "+12025550199", "csrf_token": csrf_of(page.text), "next": "/account"}
            )
            assert posted.status_code == 303
            [call] = double.wait_for_calls(1)
            assert call.to == "+12025550199"
            verify = new.get(posted.headers["location"])
            done = new.post(
                "/voice2fa/verify", data={"code": call.code(), "csrf_token": csrf_of(verify.text), "next": "/account"}
            )
            assert done.headers["location"] == "/account"
            assert new.get("/account").status_code == 200
            assert re.search(r"ends in <b>0199</b>", new.get("/phone").text)
        with httpx.Client(base_url=app.url, timeout=20) as demo:
            assert demo.post("/login", data={"username": "demo", "password": "demo"}).status_code == 303
            assert "ends in <b>0143</b>" in demo.get("/phone").text
            change = demo.post("/phone")
            assert change.status_code == 303 and change.headers["location"] == "/voice2fa/phone?next=%2Fphone"
            step_up = demo.get(change.headers["location"])
            assert step_up.status_code == 303  # the current number first
            double.wait_for_calls(2)
            assert double.calls[1].to == "+12025550143"
            verify = demo.get(step_up.headers["location"])
            back = "/voice2fa/phone?next=/phone"
            form = {"code": double.calls[1].code(), "csrf_token": csrf_of(verify.text), "next": back}
            ok = demo.post("/voice2fa/verify", data=form)
            assert ok.status_code == 303
            assert demo.get(ok.headers["location"]).status_code == 200  # now the form


def test_the_demo_user_without_a_phone_sees_the_enrolment_call_on_the_dev_phone(
    uvicorn_factory: Callable[..., Any],
) -> None:
    """The README's demo (console caller): ``new`` adds a number and reads its code on the dev phone."""
    app = uvicorn_factory("examples.starlette_app:app", {"VOICE2FA_SECRET_KEY": SECRET})
    with httpx.Client(base_url=app.url, timeout=20) as c:
        assert c.post("/login", data={"username": "new", "password": "new"}).status_code == 303
        assert c.get("/voice2fa/dev/calls").json()["calls"] == []
        page = c.get("/account", follow_redirects=True)
        assert "Your phone number" in page.text
        posted = c.post(
            "/voice2fa/phone", data={"phone": "+12025550111", "csrf_token": csrf_of(page.text), "next": "/account"}
        )
        assert posted.status_code == 303
        code = None
        for _ in range(150):
            calls = c.get("/voice2fa/dev/calls").json()["calls"]
            if calls and calls[-1]["done"]:
                code = next(d for s in calls[-1]["says"] if len(d := re.sub(r"[^0-9]", "", s)) == 6)
                break
            time.sleep(0.1)
        assert code is not None
        verify = c.get(posted.headers["location"])
        done = c.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(verify.text), "next": "/account"})
        assert done.status_code == 303 and c.get("/account").status_code == 200
        assert "ends in <b>0111</b>" in c.get("/phone").text
        assert len(c.get("/voice2fa/dev/calls").json()["calls"]) == 1  # now the account's own number


def test_a_version_that_follows_the_phone_keeps_the_new_proof(harness_factory: Callable[..., Harness]) -> None:
    """An app whose version string is derived from the phone (as the README suggests for
    revocation) is verified for the new number right after enrolling: no second call."""
    accounts = Accounts({"nina": None})

    async def identify(conn: HTTPConnection) -> Identity | None:
        found = await accounts.identify(conn)
        return None if found is None else found._replace(version=f"v-{found.phone}")

    h = harness_factory(middleware={"identify": identify, "on_phone_confirmed": accounts.save})
    with h.client("nina") as c:
        assert enrol(h, c, "+12025550150").status_code == 303
        assert type_code(h, c, 0).status_code == 303
        assert c.get("/account").text == "account: secret page"
    assert len(h.double.calls) == 1


def test_a_refused_enrolment_call_again_links_back_to_the_verify_page(
    enrol_harness: Callable[..., Harness],
) -> None:
    h = enrol_harness(enrol_calls_per_user_per_hour=1, resend_cooldown=0)
    with h.client("nina") as c:
        assert enrol(h, c, "+12025550160").status_code == 303
        h.double.wait_for_calls(1)
        page = c.get("/voice2fa/verify?next=/account")
        again = c.post("/voice2fa/resend", data={"csrf_token": csrf_of(page.text), "next": "/account"})
        assert again.status_code == 429
        link = re.search(r'id="v2fa-again" href="([^"]+)"', again.text)
        assert link is not None and link.group(1).startswith("/voice2fa/verify?next="), again.text
    assert len(h.double.calls) == 1


def test_the_dev_phone_shows_each_account_its_own_calls_only(uvicorn_factory: Callable[..., Any]) -> None:
    """The dev phone filters by user, not by number: ``new`` typing ``demo``'s number on the
    phone page must not see the code of ``demo``'s own call (it listed it before)."""
    app = uvicorn_factory("examples.starlette_app:app", {"VOICE2FA_SECRET_KEY": SECRET})
    with httpx.Client(base_url=app.url, timeout=20) as demo, httpx.Client(base_url=app.url, timeout=20) as new:
        assert demo.post("/login", data={"username": "demo", "password": "demo"}).status_code == 303
        assert demo.get("/account").status_code == 303  # a call to demo's number, with its code
        for _ in range(150):
            mine = demo.get("/voice2fa/dev/calls").json()["calls"]
            if mine and mine[-1]["done"]:
                break
            time.sleep(0.1)
        assert len(mine) == 1
        assert new.post("/login", data={"username": "new", "password": "new"}).status_code == 303
        page = new.get("/account", follow_redirects=True)
        posted = new.post(
            "/voice2fa/phone", data={"phone": mine[0]["to"], "csrf_token": csrf_of(page.text), "next": "/account"}
        )
        assert posted.status_code == 303
        for _ in range(150):
            theirs = new.get("/voice2fa/dev/calls").json()["calls"]
            if theirs and theirs[-1]["done"]:
                break
            time.sleep(0.1)
        assert [c["sid"] for c in theirs] != [] and mine[0]["sid"] not in [c["sid"] for c in theirs]
        assert len(demo.get("/voice2fa/dev/calls").json()["calls"]) == 1  # and demo sees not new's


# -- VoIP numbers (NIST SP 800-63B-4): refused by default, on the phone page and before a call ---

VOIP_GB = "+445612345678"  # libphonenumber types it VOIP


def test_voip_numbers_are_refused_on_the_phone_page_by_default(enrol_harness: Callable[..., Harness]) -> None:
    h = enrol_harness(allowed_countries=["US", "GB"])
    with h.client("nina") as c:
        r = enrol(h, c, VOIP_GB)
        assert r.status_code == 400 and "cannot call internet phone (VoIP) numbers" in r.text
        assert 'aria-invalid="true"' in r.text
        body = c.get("/voice2fa/phone", headers={"accept": "application/json"}).json()
        j = c.post("/voice2fa/phone", json={"phone": VOIP_GB, "csrf_token": body["csrf_token"]})
        assert j.status_code == 400 and j.json()["error"] == "voip" and "VoIP" in j.json()["message"]
    assert not h.double.calls and not h.double.create_requests
    refused = [e for e in h.events if e.kind == "call_refused"]
    assert refused and all(e.detail["reason"] == "phone_voip" for e in refused)


def test_voip_numbers_are_not_called_for_a_verification(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(allowed_countries=["US", "GB"])
    with h.client("alice") as c:
        c.cookies.set("test_phone", VOIP_GB)
        r = c.get("/account")
        assert r.status_code == 403 and "internet phone (VoIP)" in r.text
        de = c.get("/account", headers={"accept-language": "de"})
        assert "Internettelefonie" in de.text
    assert not h.double.create_requests
    assert [e.detail["reason"] for e in h.events if e.kind == "call_refused"] == ["phone_voip", "phone_voip"]


def test_allow_voip_lets_the_number_be_called(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(allowed_countries=["US", "GB"], allow_voip=True)
    with h.client("alice") as c:
        c.cookies.set("test_phone", VOIP_GB)
        r = c.get("/account")
        assert r.status_code == 303
        [call] = h.double.wait_for_calls(1)
        assert call.to == VOIP_GB


def test_a_line_type_lookup_refuses_voip_lines_the_ranges_do_not_show(
    enrol_harness: Callable[..., Harness], accounts: Accounts
) -> None:
    h = enrol_harness(lookup_line_type=True)
    h.double.line_types["+12025550150"] = "voip"
    with h.client("nina") as c:
        r = enrol(h, c, "+12025550150")
        assert r.status_code == 400 and "internet phone (VoIP)" in r.text
        assert enrol(h, c, "+12025550150").status_code == 400
        assert h.double.lookups == ["+12025550150"]  # looked up once: the answer is kept
        assert not h.double.create_requests
        h.double.lookups_fail = True  # a failed lookup never blocks a call
        assert enrol(h, c, "+12025550151").status_code == 303
        h.double.wait_for_calls(1)
    refused = [e.detail for e in h.events if e.kind == "call_refused"]
    assert refused == [{"reason": "phone_voip", "source": "lookup"}] * 2
    h.double.lookups_fail = False
    with h.client("alice") as c:  # a verification call: looked up before the first call only
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303
    assert h.double.lookups.count("+12025550143") == 1


def test_a_verification_call_to_a_voip_line_is_refused_after_a_lookup(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(lookup_line_type=True)
    h.double.line_types["+12025550143"] = "voip"
    with h.client("alice") as c:
        r = c.get("/account")
        assert r.status_code == 403 and "internet phone (VoIP)" in r.text
    assert not h.double.create_requests and h.double.lookups == ["+12025550143"]

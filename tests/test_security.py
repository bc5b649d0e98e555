"""The security table of DESIGN.md, one test (or more) per row, through HTTP against a
running server. Names start with the row id: ``test_s4_...``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from voice2fa_middleware import MemoryStore, StoreError, compute_signature
from voice2fa_middleware._core import crypto as crypto_module
from voice2fa_middleware._core.crypto import generate_code
from voice2fa_middleware.testing import SignalWireDouble

from .conftest import Harness, RecordingCaller, csrf_of, submit_concurrently, wrong_for


def memory_store(h: Harness) -> MemoryStore:
    store = h.middleware_kwargs["store"]
    assert isinstance(store, MemoryStore)
    return store


# -- S1 codes -----------------------------------------------------------------------------------


def test_s1_codes_come_from_secrets_and_keep_leading_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_randbelow(n: int) -> int:
        calls.append(n)
        return 42

    monkeypatch.setattr(crypto_module.secrets, "randbelow", fake_randbelow)
    assert generate_code(6) == "000042"
    assert generate_code(10) == "0000000042"
    assert calls == [10**6, 10**10]


def test_s1_codes_are_spread_over_the_whole_space() -> None:
    codes = [generate_code(6) for _ in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(set(codes)) > 1980
    assert {c[0] for c in codes} == set("0123456789")


def test_s1_code_length_is_configurable(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(code_digits=8)
    with h.client() as c:
        csrf, code = h.challenge(c)
        assert len(code) == 8
        assert h.verify(c, code, csrf).status_code == 303


# -- S2 stored codes are keyed hashes --------------------------------------------------------------


def test_s2_store_keeps_a_keyed_hash_and_drops_the_plain_code_when_the_call_ends(harness: Harness) -> None:
    with harness.client() as c:
        _csrf, code = harness.challenge(c)
        [challenge] = list(memory_store(harness)._challenges.values())
        assert challenge.code_mac and code not in challenge.code_mac
        assert challenge.code_mac != hashlib.sha256(code.encode()).hexdigest()  # keyed, not a bare hash
        assert harness.double.calls[-1].statuses[-1] == "completed"
        assert challenge.code == ""  # the call has ended: no plain copy left
        for field in challenge.to_fields().values():
            assert code not in field


# -- S3 expiry, one-time use, resend replaces ------------------------------------------------------


def test_s3_expired_challenge_refuses_the_right_code(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        harness.clock.offset = 301
        r = harness.verify(c, code, csrf)
        assert r.status_code == 400
        assert c.get("/account").status_code == 303


def test_s3_replayed_correct_post_fails(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        pending = c.cookies.get("voice2fa_pending")
        assert harness.verify(c, code, csrf).status_code == 303
        c.cookies.set("voice2fa_pending", pending)  # an attacker replays the whole request
        replay = harness.verify(c, code, csrf)
        assert replay.status_code == 400
        assert "voice2fa_verified" not in replay.headers.get("set-cookie", "")


def test_s3_concurrent_correct_submissions_give_exactly_one_success(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        cookies = dict(c.cookies)
    results = submit_concurrently(harness.url, cookies, {"code": code, "csrf_token": csrf, "next": "/account"}, 8)
    assert sorted(results).count(303) == 1
    assert all(s == 400 for s in results if s != 303)


def test_s3_after_a_resend_the_old_code_fails(harness: Harness) -> None:
    with harness.client() as c:
        csrf, old = harness.challenge(c)
        harness.clock.offset = 31
        r = c.post("/voice2fa/resend", data={"csrf_token": csrf, "next": "/account"})
        assert r.status_code == 303 and r.headers["location"].endswith("sent=1")
        harness.double.wait_for_calls(2)
        new = harness.double.calls[-1].code()
        assert new is not None
        if new != old:
            assert harness.verify(c, old, csrf).status_code == 400
        assert harness.verify(c, new, csrf).status_code == 303


def test_s3_code_of_one_challenge_or_user_fails_on_another(harness: Harness) -> None:
    with harness.client("alice") as alice, harness.client("bob") as bob:
        _a_csrf, a_code = harness.challenge(alice)
        b_csrf, b_code = harness.challenge(bob)
        if a_code != b_code:
            assert harness.verify(bob, a_code, b_csrf).status_code == 400
        # Bob's signed pending cookie in Alice's session is refused outright.
        alice.cookies.set("voice2fa_pending", bob.cookies["voice2fa_pending"])
        assert harness.verify(alice, b_code, b_csrf).status_code == 403
        assert alice.get("/account").status_code == 303


# -- S4 attempts and lockout -------------------------------------------------------------------------


def test_s4_sixth_wrong_code_kills_the_challenge_and_the_right_code_then_fails(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        lefts = []
        for _ in range(5):
            r = harness.verify(c, wrong_for(code), csrf)
            assert r.status_code == 400
            m = re.search(r"(\d) attempts? left", r.text)
            lefts.append(int(m.group(1)) if m else 0)
        assert lefts == [4, 3, 2, 1, 0]
        assert harness.verify(c, wrong_for(code), csrf).status_code == 400  # the 6th
        assert harness.verify(c, code, csrf).status_code == 400
        assert c.get("/account").status_code == 303


def test_s4_failures_count_per_user_across_challenges_and_lock_out(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(lockout_failures=7, calls_per_user_per_hour=10, calls_per_phone_per_hour=10)
    with h.client() as c:
        csrf, code = h.challenge(c)
        for _ in range(5):
            h.verify(c, wrong_for(code), csrf)
        c.cookies.delete("voice2fa_pending")
        csrf, code = h.challenge(c)  # a new challenge does not reset the count
        assert h.verify(c, wrong_for(code), csrf).status_code == 400
        locked = h.verify(c, wrong_for(code), csrf)
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert h.verify(c, code, csrf).status_code in (400, 429)  # the right code no longer helps
        assert c.get("/account").status_code == 429  # no new call while locked
        assert any(e.kind == "locked" for e in h.events)


def test_s4_success_resets_the_failure_count(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(lockout_failures=6, calls_per_user_per_hour=10, calls_per_phone_per_hour=10)
    with h.client() as c:
        csrf, code = h.challenge(c)
        for _ in range(4):
            h.verify(c, wrong_for(code), csrf)
        assert h.verify(c, code, csrf).status_code == 303
        c.cookies.clear()
        c.cookies.set("test_user", "alice")
        csrf, code = h.challenge(c)
        for _ in range(4):  # 8 failures in all, but only 4 since the success
            assert h.verify(c, wrong_for(code), csrf).status_code == 400
        assert h.verify(c, code, csrf).status_code == 303


# -- S5 constant time -----------------------------------------------------------------------------


def test_s5_codes_are_compared_in_constant_time(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(crypto_module.hmac, "compare_digest", spy)
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        seen.clear()
        harness.verify(c, wrong_for(code), csrf)
        assert seen, "the code check must go through hmac.compare_digest"


# -- S6 no code in URLs, logs, cookies, errors ----------------------------------------------------------


def test_s6_no_code_in_any_url_log_cookie_or_error(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        bad = harness.verify(c, wrong_for(code), csrf)
        seen += [bad.text, str(bad.headers)]
        status = c.get("/voice2fa/verify/status")
        seen += [status.text]
        ok = harness.verify(c, code, csrf)
        seen += [str(ok.headers), ok.headers.get("location", "")]
        seen += [f"{k}={v}" for k, v in c.cookies.items()]
    for request in harness.double.create_requests:
        seen += [v for _k, v in request]
    seen += [r.getMessage() for r in caplog.records]
    seen += [json.dumps(e.detail) for e in harness.events]
    for text in seen:
        assert code not in text
    # The cookies carry no code even once decoded.
    for value in seen:
        for chunk in value.split("."):
            try:
                decoded = base64.urlsafe_b64decode(chunk + "=" * (-len(chunk) % 4)).decode("utf-8", "ignore")
            except ValueError:
                continue
            assert code not in decoded
    laml_url = dict(harness.double.create_requests[0])["Url"]
    assert "code" not in laml_url.split("/laml/")[1].lower()


# -- S7 signed webhooks -------------------------------------------------------------------------------


def _signed_post(url: str, key: str, form: dict[str, str], header: str = "X-SignalWire-Signature") -> httpx.Response:
    return httpx.post(url, data=form, headers={header: compute_signature(key, url, form)})


def test_s7_webhooks_without_a_valid_signature_get_403_and_no_code(harness_factory: Callable[..., Harness]) -> None:
    caller = RecordingCaller()  # the test plays the carrier by hand
    harness = harness_factory(caller=caller)
    with harness.client() as c:
        assert c.get("/account").status_code == 303
        laml, status = caller.calls[0]["url"], caller.calls[0]["status"]
        sid = "CA-test-1"
        form = {"CallSid": sid, "CallStatus": "in-progress", "AccountSid": harness.double.project}
        key = harness.double.signing_key
        assert key
        cases = [
            httpx.post(laml, data=form),  # unsigned
            httpx.post(laml, data=form, headers={"X-SignalWire-Signature": "bm90IGEgc2lnbmF0dXJl"}),
            _signed_post(laml, "a wrong key", form),
            httpx.post(
                laml,
                data={**form, "Digits": "1"},
                headers={"X-SignalWire-Signature": compute_signature(key, laml, form)},
            ),
            _signed_post(laml + "/code", "a wrong key", {**form, "Digits": "1"}),
            httpx.post(status, data={**form, "CallStatus": "completed"}),
            _signed_post(status, "a wrong key", {**form, "CallStatus": "completed"}),
        ]
        for r in cases:
            assert r.status_code == 403
            assert not re.search(r"\d, \d, \d", r.text)
        # Properly signed, both header names: the code is spoken only after a key press.
        for header in ("X-SignalWire-Signature", "X-Twilio-Signature"):
            r = _signed_post(laml + "/code", key, {**form, "Digits": "1"}, header)
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
            assert re.search(r"\d, \d, \d, \d, \d, \d", r.text)
        # A signed request for another call sid does not get the code either.
        other = _signed_post(laml + "/code", key, {**form, "CallSid": "someone-else", "Digits": "1"})
        assert other.status_code == 403


def test_s7_voicemail_guard_asks_for_a_key_before_the_code(harness: Harness) -> None:
    with harness.client() as c:
        harness.challenge(c)
    call = harness.double.calls[0]
    assert "Press any key" in call.says[0]
    # No code before the key press: the one digit said is the "not me" key (press 9).
    assert re.findall(r"\d", call.says[0]) == ["9"] and "press 9" in call.says[0]


# -- S8 call limits -------------------------------------------------------------------------------------


def test_s8_resend_cooldown_and_calls_per_challenge(harness: Harness) -> None:
    with harness.client() as c:
        csrf, _code = harness.challenge(c)
        early = c.post("/voice2fa/resend", data={"csrf_token": csrf})
        assert early.status_code == 429 and 1 <= int(early.headers["retry-after"]) <= 30
        assert len(harness.double.create_requests) == 1
        for n in (2, 3):
            harness.clock.offset += 31
            assert c.post("/voice2fa/resend", data={"csrf_token": csrf}).status_code == 303
            harness.double.wait_for_calls(n)
        harness.clock.offset += 31
        fourth = c.post("/voice2fa/resend", data={"csrf_token": csrf})
        assert fourth.status_code == 429 and int(fourth.headers["retry-after"]) > 0
        assert len(harness.double.create_requests) == 3
        assert any(e.kind == "call_refused" for e in harness.events)


@pytest.mark.parametrize(
    ("limit", "users"),
    [
        ("calls_per_user_per_hour", ["alice", "alice", "alice"]),
        ("calls_per_client_per_hour", ["alice", "bob", "carol"]),
    ],
)
def test_s8_hourly_limits_refuse_with_retry_after_and_place_no_call(
    harness_factory: Callable[..., Harness], limit: str, users: list[str]
) -> None:
    h = harness_factory(**{limit: 2})
    for n, user in enumerate(users):
        with h.client(user) as c:
            if n < 2:
                csrf, _code = h.challenge(c)
                # Ended, so that the next visit needs a new call (a live one is reused, S21).
                assert c.post("/voice2fa/cancel", data={"csrf_token": csrf}).status_code == 303
            else:
                r = c.get("/account")
                assert r.status_code == 429
                assert 3000 < int(r.headers["retry-after"]) <= 3600
    assert len(h.double.create_requests) == 2


def test_s8_per_phone_and_global_budgets(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(calls_per_hour=2)
    for n, user in enumerate(["alice", "bob", "carol"]):
        with h.client(user) as c:
            assert c.get("/account").status_code == (303 if n < 2 else 429)
    assert len(h.double.create_requests) == 2


# -- S9 phone numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["premium", "foreign", "bogus"])
def test_s9_premium_foreign_and_invalid_numbers_are_refused_before_any_call(harness: Harness, user: str) -> None:
    with harness.client(user) as c:
        r = c.get("/account")
        assert r.status_code == 403
        assert "cannot call" in r.text
    assert harness.double.create_requests == []


def test_s9_allowed_countries_are_configurable(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(allowed_countries=["US", "FR"])
    with h.client("foreign") as c:
        csrf, code = h.challenge(c)
        assert dict(h.double.create_requests[0])["To"] == "+33612345678"
        assert h.verify(c, code, csrf).status_code == 303


# -- S10 cookies ----------------------------------------------------------------------------------------


def test_s10_cookie_attributes_on_http(harness: Harness) -> None:
    with harness.client() as c:
        r = c.get("/account")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("voice2fa_pending=")
        assert "HttpOnly" in cookie and re.search("SameSite=lax", cookie, re.I) and "Path=/" in cookie


def test_s10_https_uses_secure_host_prefixed_cookies(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(cookie_secure=True)
    with h.client() as c:
        r = c.get("/account")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-voice2fa_pending=")
        assert "Secure" in cookie and "Domain" not in cookie and "Path=/" in cookie


def test_s10_tampered_expired_and_foreign_user_cookies_are_refused(harness: Harness) -> None:
    with harness.client("bob") as bob:
        csrf, code = harness.challenge(bob)
        assert harness.verify(bob, code, csrf).status_code == 303
        bobs = bob.cookies["voice2fa_verified"]
        assert bob.get("/account").status_code == 200
    with harness.client("alice") as alice:
        alice.cookies.set("voice2fa_verified", bobs)
        assert alice.get("/account").status_code == 303  # bob's cookie is worthless to alice
    with harness.client("bob") as bob2:
        version, stamp, sig = bobs.split(".")
        other = "B" if sig[5] == "A" else "A"  # a whole base64 digit: always another signature
        bob2.cookies.set("voice2fa_verified", f"{version}.{stamp}.{sig[:5]}{other}{sig[6:]}")
        assert bob2.get("/account").status_code == 303
    with harness.client("bob") as bob3:
        bob3.cookies.set("voice2fa_verified", "garbage")
        assert bob3.get("/account").status_code == 303


def test_s10_verified_cookie_expires(harness_factory: Callable[..., Harness]) -> None:
    # 3 s, not 1: itsdangerous timestamps are whole seconds, and on a loaded machine the next
    # request may come a second after the verification.
    h = harness_factory(verified_max_age=3)
    with h.client() as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303
        assert c.get("/account").status_code == 200  # the token is now in the positive cache
        time.sleep(4.1)  # a real wait in the test only
        assert c.get("/account").status_code == 303  # the cache never outlives the token


# -- S11 CSRF -------------------------------------------------------------------------------------------


def test_s11_verify_and_resend_need_the_csrf_token_and_same_site(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        assert c.post("/voice2fa/verify", data={"code": code}).status_code == 403
        assert c.post("/voice2fa/verify", data={"code": code, "csrf_token": "forged"}).status_code == 403
        cross = c.post(
            "/voice2fa/verify", data={"code": code, "csrf_token": csrf}, headers={"sec-fetch-site": "cross-site"}
        )
        assert cross.status_code == 403
        foreign = c.post(
            "/voice2fa/verify", data={"code": code, "csrf_token": csrf}, headers={"origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert c.post("/voice2fa/resend", data={}).status_code == 403
        assert c.get("/account").status_code == 303  # none of those verified anything
        same = c.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf}, headers={"origin": harness.url})
        assert same.status_code == 303


# -- S12 redirects --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "\\\\evil.example",
        "http:/evil.example",
        "/%0a/evil.example",
    ],
)
def test_s12_next_stays_on_site(harness: Harness, evil: str) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        r = harness.verify(c, code, csrf, next_url=evil)
        assert r.status_code == 303
        location = r.headers["location"]
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location
        assert "evil.example" not in location or location.startswith("/%0a")


def test_s12_verify_page_link_stays_on_site(harness: Harness) -> None:
    with harness.client() as c:
        c.get("/account")
        page = c.get("/voice2fa/verify", params={"next": "//evil.example"})
        assert 'value="//evil.example"' not in page.text
        assert 'name="next" value="/account"' in page.text


# -- S13 fail closed ------------------------------------------------------------------------------------


class BrokenStore(MemoryStore):
    # Its methods may wait (mode "hang"): it declares so, and gets the store timeout.
    deadline_free = False

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.broken = False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in (
            "get",
            "create",
            "take",
            "peek",
            "reserve_attempt",
            "begin_call",
            "hit",
        ) and super().__getattribute__("broken"):
            mode = super().__getattribute__("mode")

            async def broken(*args: Any, **kwargs: Any) -> Any:
                if mode == "hang":
                    import anyio

                    await anyio.sleep(30)
                if mode == "raise":
                    raise StoreError("down")
                raise ConnectionError("boom")

            return broken
        return attr


@pytest.mark.parametrize("mode", ["raise", "hang", "other"])
def test_s13_store_failure_fails_closed(harness_factory: Callable[..., Harness], mode: str) -> None:
    store = BrokenStore(mode)
    h = harness_factory(store=store, store_timeout=0.5)
    with h.client() as c:
        csrf, code = h.challenge(c)
        store.broken = True
        r = h.verify(c, code, csrf)
        assert r.status_code == 503
        assert "unavailable" in r.text
        with h.client("bob") as bob:
            protected = bob.get("/account")
            assert protected.status_code == 503
            assert "secret page" not in protected.text
            assert bob.get("/decorated").status_code == 503
        store.broken = False
        assert h.verify(c, code, csrf).status_code == 303  # nothing was lost


# -- S14 provider errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["code", "errors"])
def test_s14_provider_error_shows_a_message_and_leaves_nothing_half_made(harness: Harness, shape: str) -> None:
    harness.double.fail_next(500, shape=shape)
    with harness.client() as c:
        r = c.get("/account")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"  # an outage: says when
        assert "could not place the call" in r.text
        assert 'href="/account"' in r.text  # a way to retry
        assert len(memory_store(harness)) == 0
        assert "voice2fa_pending" not in r.headers.get("set-cookie", "")
        csrf, code = harness.challenge(c)  # the retry works
        assert harness.verify(c, code, csrf).status_code == 303
    assert any(e.kind == "call_failed" for e in harness.events)


def test_s14_provider_timeout_never_calls_twice(harness_factory: Callable[..., Harness]) -> None:
    """A read timeout: the call may exist (the provider may have created it). The user goes
    on to the verify page with the code the call would read; no second call is placed, and
    asking for one waits for the usual cooldown."""
    double = SignalWireDouble(create_delay=3).start()
    h = harness_factory(double=double, call_timeout=1)
    with h.client() as c:
        r = c.get("/account")
        assert r.status_code == 303 and "/voice2fa/verify" in r.headers["location"]
        assert len(memory_store(h)) == 1
        again = c.get("/account")  # a second visit: the same challenge, no new call
        assert again.status_code == 303
        code = double.wait_for_code(timeout=15)  # the slow provider did place the call
        assert len(double.create_requests) == 1
        csrf = csrf_of(c.get(r.headers["location"]).text)
        assert h.verify(c, code, csrf).status_code == 303
    failed = [e for e in h.events if e.kind == "call_failed"]
    assert failed and failed[0].detail.get("maybe_placed") == 1


# -- S15 no-store -------------------------------------------------------------------------------------------


def test_s15_challenge_state_is_never_cached(harness: Harness) -> None:
    with harness.client() as c:
        first = c.get("/account")
        assert first.headers["cache-control"] == "no-store"
        csrf = csrf_of(c.get(first.headers["location"]).text)
        code = harness.double.wait_for_code()
        responses = [
            c.get("/voice2fa/verify?next=/account"),
            c.get("/voice2fa/verify/status"),
            harness.verify(c, wrong_for(code), csrf),
            c.get("/account", headers={"accept": "application/json"}),
            harness.verify(c, code, csrf),
        ]
        for r in responses:
            assert r.headers["cache-control"] == "no-store", r.url


# -- S16 rotation on verify -----------------------------------------------------------------------------


def test_s16_verifying_clears_pending_and_sets_a_new_verified_cookie(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        r = harness.verify(c, code, csrf)
        cookies = r.headers.get_list("set-cookie")
        assert any(x.startswith("voice2fa_verified=") and "Max-Age=43200" in x for x in cookies)
        assert any(x.startswith('voice2fa_pending=""') or x.startswith("voice2fa_pending=;") for x in cookies) or any(
            x.startswith("voice2fa_pending=") and "Max-Age=0" in x for x in cookies
        )
        assert "voice2fa_pending" not in c.cookies


# -- S18 audit ------------------------------------------------------------------------------------------


def test_s18_audit_events_cover_the_flow_without_codes(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        harness.verify(c, wrong_for(code), csrf)
        harness.verify(c, code, csrf)
    kinds = [e.kind for e in harness.events]
    for kind in ("challenge_created", "call_placed", "call_status", "failed", "verified"):
        assert kind in kinds
    for e in harness.events:
        assert code not in repr(e)
        if e.kind != "call_status":
            assert e.user_id == "alice" and e.client == "127.0.0.1"
        assert e.time > 0


# -- routes protected by decorator, step-up, websockets ------------------------------------------------------


def test_decorator_and_step_up(harness: Harness) -> None:
    with harness.client() as c:
        first = c.get("/decorated")
        assert first.status_code == 303 and first.headers["location"] == "/voice2fa/verify?next=%2Fdecorated"
        assert c.get("/decorated-sync").status_code == 303
        csrf = csrf_of(c.get(first.headers["location"]).text)
        code = harness.double.wait_for_code()
        assert len(harness.double.calls) == 1  # the second protected page reused the challenge
        assert harness.verify(c, code, csrf).status_code == 303
        assert c.get("/decorated").text == "decorated: secret page"
        assert c.get("/decorated-sync").text == "decorated sync: secret page"
        assert c.get("/pay").status_code == 200
        harness.clock.offset = 61  # step-up: /pay wants a check younger than 60 s
        assert c.get("/pay").status_code == 303
        assert c.get("/account").status_code == 200
    with harness.client(None) as anonymous:
        assert anonymous.get("/account").text == "account: secret page"  # the app decides on sign-in
        assert anonymous.get("/").text == "public page"


# -- no enumeration; client addresses behind proxies --------------------------------------------------


def test_wrong_expired_and_unknown_challenges_answer_alike(harness: Harness) -> None:
    json_headers = {"accept": "application/json"}
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        wrong = c.post("/voice2fa/verify", json={"code": wrong_for(code), "csrf_token": csrf}, headers=json_headers)
        memory_store(harness)._challenges.clear()  # the challenge is gone (expired or unknown)
        unknown = c.post("/voice2fa/verify", json={"code": code, "csrf_token": csrf}, headers=json_headers)
        harness.clock.offset = 400
        expired = c.post("/voice2fa/verify", json={"code": code, "csrf_token": csrf}, headers=json_headers)
    for r in (wrong, unknown, expired):
        assert r.status_code == 400
        assert set(r.json()) == {"error", "message", "attempts_left"} and r.json()["error"] == "invalid_code"


def test_forwarded_for_is_believed_only_from_trusted_proxies(harness_factory: Callable[..., Harness]) -> None:
    trusting = harness_factory(trusted_proxies=["127.0.0.1/32"], calls_per_client_per_hour=1)
    with trusting.client("alice") as a, trusting.client("bob") as b:
        assert a.get("/account", headers={"x-forwarded-for": "203.0.113.7"}).status_code == 303
        assert b.get("/account", headers={"x-forwarded-for": "203.0.113.8"}).status_code == 303  # another client
    assert {e.client for e in trusting.events if e.kind == "challenge_created"} == {"203.0.113.7", "203.0.113.8"}
    naive = harness_factory(calls_per_client_per_hour=1)
    with naive.client("alice") as a, naive.client("bob") as b:
        assert a.get("/account", headers={"x-forwarded-for": "203.0.113.7"}).status_code == 303
        # Without trusted proxies the header is ignored: same peer, same budget.
        assert b.get("/account", headers={"x-forwarded-for": "203.0.113.8"}).status_code == 429


def test_s14_calls_refused_while_the_circuit_is_open_spend_no_budget(harness_factory: Callable[..., Harness]) -> None:
    """SignalWire failing: the circuit opens; while it is open nothing is sent and nothing is
    charged (a user reloading does not spend their hourly calls); afterwards calls work."""
    from voice2fa_middleware import SignalWireCaller

    now = [1000.0]
    double = SignalWireDouble().start()
    caller = SignalWireCaller(
        space=double.url, project=double.project, token=double.token, failure_threshold=1, cooldown=60,
        clock=lambda: now[0],
    )  # fmt: skip
    h = harness_factory(double=double, caller=caller, calls_per_user_per_hour=2)
    double.fail_next(500)
    with h.client("bob") as bob:
        assert bob.get("/account").status_code == 503  # one call tried: it failed (and was given back)
        for _ in range(3):
            r = bob.get("/account")
            assert r.status_code == 503 and 0 < int(r.headers["retry-after"]) <= 60
        assert len(double.create_requests) == 1
        now[0] += 61  # the cool-down is over: one trial call
        csrf, code = h.challenge(bob)
        assert h.verify(bob, code, csrf).status_code == 303
    assert len(double.create_requests) == 2 and caller.state == "closed"


# -- S29 recovery codes, VoIP numbers and notifications; S35 forgotten devices -----------------------


def _recovery_harness(harness_factory: Callable[..., Harness], **settings: Any) -> tuple[Harness, Any]:
    from voice2fa_middleware import MemoryRecoveryCodes

    codes = MemoryRecoveryCodes()
    return harness_factory(middleware={"recovery_codes": codes}, **settings), codes


def _create_codes(h: Harness, user: str) -> list[str]:
    with h.client(user) as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303
        page = c.get("/voice2fa/recovery")
        made = c.post("/voice2fa/recovery", data={"csrf_token": csrf_of(page.text)})
        return re.findall(r"<code>([a-z2-7]{5}-[a-z2-7]{5})</code>", made.text)


def test_s29_recovery_codes_are_keyed_hashes_bound_to_their_user(harness_factory: Callable[..., Harness]) -> None:
    h, store = _recovery_harness(harness_factory)
    codes = _create_codes(h, "alice")
    kept = store._codes["alice"]
    assert len(kept) == 10 and all(re.fullmatch(r"[0-9a-f]{64}", k) for k in kept)
    assert not any(code.replace("-", "") in k for code in codes for k in kept)
    with h.client("bob") as bob:  # another user's code is worth nothing
        page = bob.get("/voice2fa/recovery/use?next=/account")
        r = bob.post("/voice2fa/recovery/use", data={"code": codes[0], "csrf_token": csrf_of(page.text)})
        assert r.status_code == 400
    assert all(v is None for v in store._codes["alice"].values())


def test_s29_a_recovery_code_needs_this_sites_form_and_the_users_token(harness_factory: Callable[..., Harness]) -> None:
    h, _store = _recovery_harness(harness_factory)
    codes = _create_codes(h, "alice")
    with h.client("alice") as c, h.client("bob") as bob:
        token = csrf_of(c.get("/voice2fa/recovery/use").text)
        bobs = csrf_of(bob.get("/voice2fa/recovery/use").text)
        assert c.post("/voice2fa/recovery/use", data={"code": codes[0], "csrf_token": bobs}).status_code == 403
        cross = c.post(
            "/voice2fa/recovery/use",
            data={"code": codes[0], "csrf_token": token},
            headers={"sec-fetch-site": "cross-site"},
        )
        assert cross.status_code == 403
        assert c.get("/account").status_code == 303  # nothing granted (and a challenge now: a new token)
        token = csrf_of(c.get("/voice2fa/recovery/use").text)
        assert c.post("/voice2fa/recovery/use", data={"code": codes[0], "csrf_token": token}).status_code == 200


def test_s29_concurrent_wrong_recovery_codes_stay_within_the_lockout(harness_factory: Callable[..., Harness]) -> None:
    h, _store = _recovery_harness(harness_factory, lockout_failures=3)
    _create_codes(h, "alice")
    with h.client("alice") as c:
        page = c.get("/voice2fa/recovery/use?next=/account")
        form = {"code": "aaaaa-aaaaa", "csrf_token": csrf_of(page.text)}
        cookies = dict(c.cookies)
    import threading

    results: list[int] = []
    barrier = threading.Barrier(10)

    def submit() -> None:
        with httpx.Client(base_url=h.url, cookies=cookies, timeout=30) as client:
            barrier.wait()
            results.append(client.post("/voice2fa/recovery/use", data=form).status_code)

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(400) + results.count(429) == 10
    assert len([e for e in h.events if e.kind == "failed"]) <= 3  # at most lockout_failures compared


def test_s29_voip_numbers_are_never_called(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(allowed_countries=["US", "GB", "CA"])
    with h.client("alice") as c:
        for number in ("+445612345678", "+16002012345"):  # UK and Canadian VoIP ranges
            c.cookies.set("test_phone", number)
            assert c.get("/account").status_code == 403
    assert not h.double.create_requests
    assert {e.detail["reason"] for e in h.events if e.kind == "call_refused"} == {"phone_voip"}


def test_s29_notifications_never_hold_nor_fail_the_request(harness_factory: Callable[..., Harness]) -> None:
    def broken(user_id: str, kind: str, detail: Any) -> None:
        time.sleep(3)
        raise RuntimeError("no mail today")

    h = harness_factory(middleware={"on_notify": broken}, lockout_failures=1)
    with h.client("alice") as c:
        csrf, code = h.challenge(c)
        started = time.monotonic()
        assert h.verify(c, wrong_for(code), csrf).status_code == 429  # locked: a notification
        assert time.monotonic() - started < 2.5


def test_s35_a_remember_proof_older_than_the_forget_does_not_count() -> None:
    from voice2fa_middleware import Identity, Voice2FASettings
    from voice2fa_middleware._core.crypto import Keyring
    from voice2fa_middleware._web.cookies import Cookies

    settings = Voice2FASettings(secret_key="k" * 32)
    keys = Keyring(settings.secret_keys)
    cookies = Cookies(settings, keys, time.time)
    who = Identity("alice", "+12025550143", "")
    jar = {"voice2fa_remember": keys.sign_proof("remember", who)}
    scope: dict[str, Any] = {"scheme": "http"}
    assert cookies.verified_at(jar, scope, who) is not None
    cookies.not_before = lambda user_id: time.time() + 1 if user_id == "alice" else 0.0
    assert cookies.verified_at(jar, scope, who) is None  # even from the proof cache
    jar["voice2fa_verified"] = keys.sign_proof("verified", who)
    assert cookies.verified_at(jar, scope, who) is not None  # a verified cookie is not a device

"""Security round two (S19-S24): what an outside attack run broke, each with the test that
would have caught it. Real uvicorn servers on loopback and the SignalWire double."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from voice2fa_middleware import Bucket, Challenge, ConsoleCaller, Store
from voice2fa_middleware._core.rules import PathRules
from voice2fa_middleware._flow.budgets import client_group

from .conftest import Harness, csrf_of, make_store, submit_concurrently, wrong_for
from .test_units import _asgi_get

# -- S19 limits hold under concurrency on every store ----------------------------------------------


async def _guess_storm(store: Store, user: str, challenges: int, guesses: int, lockout: int) -> list[bool]:
    """``guesses`` concurrent reservations spread over ``challenges`` live challenges of one user."""
    now = time.time()
    ids = [f"{user}-c{n}" for n in range(challenges)]
    for cid in ids:
        await store.create(
            Challenge(id=cid, user_tag=user, phone="+12025550143", code_mac="", created_at=now, expires_at=now + 60)
        )
    bucket = Bucket("fail:" + user, lockout, 3600)
    results = await asyncio.gather(
        *(store.reserve_attempt(ids[n % challenges], 5, lockout=bucket, now=now) for n in range(guesses))
    )
    return [r.challenge is not None for r in results]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_s19_concurrent_guesses_never_exceed_the_lockout(kind: str, request: pytest.FixtureRequest) -> None:
    store = make_store(kind, request)
    try:
        granted = await _guess_storm(store, "u", challenges=5, guesses=25, lockout=10)
        assert sum(granted) == 10  # 25 guesses from 5 sessions: 10 comparisons, no more
        after = await store.reserve_attempt("u-c0", 5, lockout=Bucket("fail:u", 10, 3600), now=time.time())
        assert after.challenge is None and after.locked_for > 0 and after.failures == 10
    finally:
        await store.aclose()


def _storm_in_a_process(url: str, prefix: str, results: Any) -> None:
    from voice2fa_middleware import RedisStore

    async def run() -> int:
        store = RedisStore(url, key_prefix=prefix)
        try:
            bucket = Bucket("fail:shared", 10, 3600)
            got = await asyncio.gather(
                *(store.reserve_attempt(f"shared-c{n % 5}", 5, lockout=bucket, now=time.time()) for n in range(20))
            )
            return sum(r.challenge is not None for r in got)
        finally:
            await store.aclose()

    results.put(asyncio.run(run()))


@pytest.mark.redis
@pytest.mark.anyio
async def test_s19_lockout_holds_across_processes_on_redis(redis_server: Any) -> None:
    from voice2fa_middleware import RedisStore

    prefix = "storm:"
    store = RedisStore(redis_server.url, key_prefix=prefix)
    now = time.time()
    for n in range(5):
        cid = f"shared-c{n}"
        await store.create(
            Challenge(id=cid, user_tag="shared", phone="+1202", code_mac="", created_at=now, expires_at=now + 60)
        )
    await store.aclose()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=_storm_in_a_process, args=(redis_server.url, prefix, results)) for _ in range(4)]
    for w in workers:
        w.start()
    granted = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(granted) == 10, granted  # 80 guesses from 4 processes: exactly the lockout's 10


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_s19_right_code_after_a_concurrent_lockout_is_refused(
    harness_factory: Callable[..., Harness], store: str
) -> None:
    h = harness_factory(store=store, lockout_failures=4, max_attempts=10)
    with h.client() as c:
        csrf, code = h.challenge(c)
        form = {"code": wrong_for(code), "csrf_token": csrf, "next": "/account"}
        statuses = submit_concurrently(h.url, dict(c.cookies), form, 12)
        assert statuses.count(429) >= 8  # at most 4 comparisons; the rest refused as locked
        assert h.verify(c, code, csrf).status_code == 429
        assert c.get("/account").status_code == 429
    failed = [e for e in h.events if e.kind == "failed"]
    assert len(failed) <= 4


# -- S20/S21 bounded cookies; a second visit places no second call --------------------------------


def test_s20_a_long_link_keeps_the_pending_cookie_small(harness: Harness) -> None:
    with harness.client() as c:
        r = c.get("/account", params={"q": "x" * 6000})
        assert r.status_code == 303
        assert len(r.headers["set-cookie"]) < 2048
        assert len(r.headers["location"]) < 2048
        page = c.get(r.headers["location"])
        assert page.status_code == 200
        harness.double.wait_for_calls(1)
        again = c.get("/account", params={"q": "y" * 6000})
        assert again.status_code == 303
    assert len(harness.double.create_requests) == 1


def test_s21_a_second_visit_without_the_pending_cookie_places_no_call(harness: Harness) -> None:
    with harness.client() as first:
        _csrf, code = harness.challenge(first)
    for _ in range(3):  # other tabs, a dropped cookie, cross-site top-level links
        with harness.client() as other:
            r = other.get("/account")
            assert r.status_code == 303 and r.headers["location"].startswith("/voice2fa/verify")
    assert len(harness.double.create_requests) == 1
    # A browser attached to the live challenge verifies with the code of its call.
    with harness.client() as other:
        page = other.get("/account", follow_redirects=True)
        assert harness.verify(other, code, csrf_of(page.text)).status_code == 303
        assert other.get("/account").status_code == 200


def test_s21_another_users_live_challenge_is_not_shared(harness: Harness) -> None:
    with harness.client("alice") as a:
        harness.challenge(a)
    with harness.client("bob") as b:
        harness.challenge(b)
    assert len(harness.double.create_requests) == 2
    assert {dict(r)["To"] for r in harness.double.create_requests} == {"+12025550143", "+12025550144"}


# -- S23 a proof only for the phone that was called -------------------------------------------------


@pytest.mark.parametrize(("cookie", "value"), [("test_phone", "+12025550199"), ("test_version", "2")])
def test_s23_changing_the_phone_or_version_during_the_call_grants_nothing(
    harness: Harness, cookie: str, value: str
) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        c.cookies.set(cookie, value)
        r = harness.verify(c, code, csrf)
        assert r.status_code == 409
        assert "voice2fa_verified" not in r.headers.get("set-cookie", "")
        # The next visit calls the new phone; the old challenge is gone.
        assert c.get("/account").status_code == 303
    assert len(harness.double.create_requests) == 2
    if cookie == "test_phone":
        assert dict(harness.double.create_requests[-1])["To"] == value


# -- S24 patterns protect what they seem to ---------------------------------------------------------


def test_s24_a_trailing_wildcard_also_protects_its_base() -> None:
    rules = PathRules(["/admin/*"])
    for path in ["/admin", "/admin/", "/admin/users", "/admin/a/b"]:
        assert rules.match(path) is not None, path
    for path in ["/administrator", "/", "/adminx/y"]:
        assert rules.match(path) is None, path
    assert PathRules(["/api/*/keys"]).match("/api/v1/keys") is not None


@pytest.mark.parametrize("pattern", ["/account?tab=security", "/a?x=1&y=2"])
def test_s24_patterns_that_look_like_query_strings_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="instead"):
        PathRules([pattern])


def test_s24_the_base_of_a_wildcard_pattern_is_challenged(harness: Harness) -> None:
    with harness.client() as c:
        assert c.get("/admin").status_code == 303
        assert c.get("/admin/users").status_code == 303


# -- S20 slow bodies ----------------------------------------------------------------------------------


def test_s20_a_slow_body_gets_408_within_the_deadline(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(body_timeout=1.0)
    host, port = h.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /voice2fa/verify HTTP/1.1\r\nHost: x\r\nCookie: test_user=alice\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncode=1"
        )
        started = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - started < 5


# -- S5-bis per-client budgets: IPv6 by /64 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
    ],
)
def test_per_client_budgets_group_ipv6_by_64(address: str, group: str) -> None:
    assert client_group(address) == group


def test_rotating_ipv6_addresses_share_one_budget(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(trusted_proxies=["127.0.0.1/32"], calls_per_client_per_hour=1)
    with h.client("alice") as a, h.client("bob") as b:
        assert a.get("/account", headers={"x-forwarded-for": "2001:db8:1:2::10"}).status_code == 303
        assert b.get("/account", headers={"x-forwarded-for": "2001:db8:1:2::99"}).status_code == 429


# -- S22 sign-out ends the verification -----------------------------------------------------------------


def test_s22_sign_out_ends_the_verification_but_not_a_remembered_device(
    harness_factory: Callable[..., Harness],
) -> None:
    h = harness_factory(logout_url="/logout")
    with h.client() as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf, remember="1").status_code == 303
        out = c.post("/logout")
        assert out.status_code == 303
        cleared = out.headers.get_list("set-cookie")
        assert any(v.startswith('voice2fa_verified="";') or v.startswith("voice2fa_verified=;") for v in cleared)
        assert not any(v.startswith("voice2fa_remember") for v in cleared)
    with h.client() as c:  # signs in again on a browser that did not remember the device
        assert c.get("/account").status_code == 303


# -- dev phone: only the signed-in user's calls ------------------------------------------------------------


def test_dev_phone_shows_only_the_signed_in_users_calls(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(caller=ConsoleCaller(signing_key="console-key", echo=False), signing_key="console-key")
    with h.client("alice") as a, h.client("bob") as b:
        assert a.get("/account").status_code == 303
        assert b.get("/account").status_code == 303
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(a.get("/voice2fa/dev/calls").json()["calls"]) < 1:
            time.sleep(0.05)
        mine = a.get("/voice2fa/dev/calls").json()["calls"]
        assert [call["to"] for call in mine] == ["+12025550143"]
        assert [call["to"] for call in b.get("/voice2fa/dev/calls").json()["calls"]] == ["+12025550144"]
        page = a.get("/voice2fa/dev/phone").text
        assert "+12025550143" in page and "+12025550144" not in page
    with h.client(None) as anonymous:
        assert anonymous.get("/voice2fa/dev/calls").json()["calls"] == []
        assert "Sign in to see" in anonymous.get("/voice2fa/dev/phone").text


# -- protected pages are not kept for the back button -----------------------------------------------------


def test_protected_html_is_sent_with_no_store(harness: Harness) -> None:
    with harness.client() as c:
        csrf, code = harness.challenge(c, "/page")
        assert harness.verify(c, code, csrf, next_url="/page").status_code == 303
        browser = {"accept": "text/html,application/xhtml+xml"}
        assert c.get("/page", headers=browser).headers["cache-control"] == "no-store"
        assert "cache-control" not in c.get("/page").headers  # an API client's request: left alone
        assert "cache-control" not in c.get("/", headers=browser).headers  # public pages too


def test_no_store_can_be_turned_off_or_on_for_everything(harness_factory: Callable[..., Harness]) -> None:
    for mode, expected in [("never", None), ("always", "no-store")]:
        h = harness_factory(protected_no_store=mode)
        with h.client() as c:
            csrf, code = h.challenge(c)
            assert h.verify(c, code, csrf).status_code == 303
            assert c.get("/account").headers.get("cache-control") == expected


# -- S21 shared budgets: one actor cannot spend another's -------------------------------------------------


def _verify_once(h: Harness, user: str) -> None:
    with h.client(user) as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303


def _cancel(h: Harness, c: Any, csrf: str) -> None:
    assert c.post("/voice2fa/cancel", data={"csrf_token": csrf}).status_code == 303


def test_s21_accounts_registered_with_a_victims_number_cannot_starve_the_victim(
    harness_factory: Callable[..., Harness],
) -> None:
    h = harness_factory(calls_per_phone_per_hour=3, calls_per_client_per_hour=50, calls_per_user_per_hour=50)
    _verify_once(h, "alice")  # the phone's owner, verified before
    victim_phone = "+12025550143"
    refused = None
    for attacker in ["bob", "carol", "bob", "carol"]:
        with h.client(attacker) as c:
            c.cookies.set("test_phone", victim_phone)
            r = c.get("/account", follow_redirects=True)
            if r.status_code == 429:
                refused = r
                break
            _cancel(h, c, csrf_of(r.text))
    assert refused is not None  # the phone's shared budget is spent by the attacker's accounts
    with h.client("alice") as c:  # the owner still gets a call
        assert c.get("/account").status_code == 303
    assert dict(h.double.create_requests[-1])["To"] == victim_phone
    spent = [e for e in h.events if e.kind == "budget_exhausted"]
    assert spent and spent[0].detail["budget"] == "phone"


def test_s21_a_flood_of_new_accounts_does_not_stop_calls_to_known_users(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    h = harness_factory(calls_per_hour=2, calls_per_client_per_hour=50)
    _verify_once(h, "alice")  # 1 of the "new" budget's 2
    with h.client("bob") as c:
        assert c.get("/account").status_code == 303  # 2 of 2
    with h.client("carol") as c:
        assert c.get("/account").status_code == 429  # the "new" budget is spent
    with h.client("alice") as c:
        assert c.get("/account").status_code == 303  # alice verified this phone before
    assert [e.detail["budget"] for e in h.events if e.kind == "budget_exhausted"] == ["all"]
    assert "call budget is spent" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 204])
async def test_s22_the_verify_pages_sign_out_lands_on_the_home_page(status: int) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings

    async def logout(request: Request) -> Response:
        return Response(status_code=status)  # as fastapi-users' cookie transport answers

    app = Starlette(routes=[Route("/auth/logout", logout, methods=["POST"])])
    app.add_middleware(
        Voice2FAMiddleware,
        identify=lambda conn: None,
        settings=Voice2FASettings(secret_key="a-secret-key-0123456789", logout_url="/auth/logout"),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        marked = await client.post("/auth/logout?voice2fa=signout")
        assert marked.status_code == 303 and marked.headers["location"] == "/"
        assert "voice2fa_verified=" in marked.headers.get("set-cookie", "")
        plain = await client.post("/auth/logout")  # the app's own callers: untouched
        assert plain.status_code == status


def test_audit_records_carry_their_fields_as_attributes(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    caplog.set_level(logging.INFO, logger="voice2fa.audit")
    with harness.client() as c:
        csrf, code = harness.challenge(c)
        harness.verify(c, wrong_for(code), csrf)
        harness.verify(c, code, csrf)
    records = [r for r in caplog.records if r.name == "voice2fa.audit"]
    kinds = [getattr(r, "voice2fa_kind", None) for r in records]
    assert {"challenge_created", "call_placed", "failed", "verified"} <= set(kinds)
    failed = next(r for r in records if getattr(r, "voice2fa_kind", None) == "failed")
    assert failed.voice2fa_user_id == "alice" and failed.voice2fa_client == "127.0.0.1"  # type: ignore[attr-defined]
    assert failed.voice2fa_attempts_left == 4  # type: ignore[attr-defined]
    # What a JSON formatter would emit: every field, and never the code or the full number.
    fields = [{k: v for k, v in vars(r).items() if k.startswith("voice2fa_") and k != "voice2fa_time"} for r in records]
    emitted = json.dumps(fields)
    assert not re.search(rf"\b{code}\b", emitted) and "+12025550143" not in emitted


@pytest.mark.anyio
async def test_two_cookie_headers_never_split_who_verified_from_who_is_served() -> None:
    """identify() and the proof check read the cookies exactly as the app's request.cookies
    does (Starlette < 0.49 reads the first Cookie header only; later ones merge them all)."""
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from voice2fa_middleware import Identity, Voice2FAMiddleware, Voice2FASettings
    from voice2fa_middleware._core.crypto import Keyring

    secret = "a-secret-key-0123456789"

    async def identify(conn: HTTPConnection) -> Identity | None:
        user = conn.cookies.get("test_user")
        return Identity(user, "+12025550143") if user else None

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("page of " + request.cookies.get("test_user", "nobody"))

    app = Starlette(routes=[Route("/account", page)])
    app.add_middleware(
        Voice2FAMiddleware, identify=identify, protect=["/account"], settings=Voice2FASettings(secret_key=secret)
    )
    bob_proof = Keyring([secret]).sign_proof("verified", ("bob", "+12025550143", ""))
    headers = [
        (b"host", b"t"),
        (b"cookie", b"test_user=alice"),
        (b"cookie", f"test_user=bob; voice2fa_verified={bob_proof}".encode()),
    ]
    status, body = await _asgi_get(app, "/account", headers)
    assert status == 303 or body == b"page of bob", (status, body)  # never alice's page on bob's proof


def test_the_console_callers_budgets_are_relaxed_and_signalwires_are_not(
    harness_factory: Callable[..., Harness],
) -> None:
    console = harness_factory(
        caller=ConsoleCaller(signing_key="console-key", echo=False), signing_key="console-key", calls_per_hour=1
    )
    with console.client("alice") as a, console.client("bob") as b:
        assert a.get("/account").status_code == 303
        assert b.get("/account").status_code == 303  # 2 calls in an hour of 1 x 100
    real = harness_factory(calls_per_hour=1)
    with real.client("alice") as a, real.client("bob") as b:
        assert a.get("/account").status_code == 303
        assert b.get("/account").status_code == 429

"""Recovery codes (the alternative to the call), notifications and support tasks, end to end on
real servers with the SignalWire double; the store-backed parts on MemoryStore and RedisStore."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from voice2fa_middleware import MemoryRecoveryCodes

from .conftest import Harness, csrf_of

CODE_RE = re.compile(r"<code>([a-z2-7]{5}-[a-z2-7]{5})</code>")


class Outbox:
    """What ``on_notify`` was called with, in order (thread-safe: sync hooks run in threads)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, user_id: str, kind: str, detail: Any) -> None:
        with self.lock:
            self.sent.append((user_id, kind, dict(detail)))

    def kinds(self, wait_for: str | None = None) -> list[str]:
        deadline = time.monotonic() + 5
        while wait_for is not None and wait_for not in [k for _u, k, _d in self.sent]:
            assert time.monotonic() < deadline, self.sent
            time.sleep(0.02)
        return [k for _u, k, _d in self.sent]


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def codes_store() -> MemoryRecoveryCodes:
    return MemoryRecoveryCodes()


@pytest.fixture
def recovery_harness(
    harness_factory: Callable[..., Harness], codes_store: MemoryRecoveryCodes, outbox: Outbox
) -> Callable[..., Harness]:
    def make(store: str = "memory", **settings: Any) -> Harness:
        middleware = {"recovery_codes": codes_store, "on_notify": outbox}
        return harness_factory(store=store, middleware=middleware, **settings)

    return make


@contextlib.contextmanager
def verified_client(h: Harness, user: str = "alice") -> Iterator[httpx.Client]:
    with h.client(user) as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf).status_code == 303
        yield c


def create_codes(c: httpx.Client) -> list[str]:
    page = c.get("/voice2fa/recovery", params={"next": "/account"})
    assert page.status_code == 200, page.text
    created = c.post("/voice2fa/recovery", data={"csrf_token": csrf_of(page.text), "next": "/account"})
    assert created.status_code == 201, created.text
    codes = CODE_RE.findall(created.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    return codes


def use_code(c: httpx.Client, code: str, next_url: str = "/account") -> httpx.Response:
    """Type ``code`` in the recovery form of the page at hand (the verify page's second form,
    or ``{prefix}/recovery/use`` without a call)."""
    page = c.get("/voice2fa/recovery/use", params={"next": next_url})
    assert page.status_code == 200, page.text
    return c.post("/voice2fa/recovery/use", data={"code": code, "csrf_token": csrf_of(page.text), "next": next_url})


# -- creating codes ---------------------------------------------------------------------------


def test_a_fresh_user_creates_codes_shown_once_and_a_new_set_ends_the_old(
    recovery_harness: Callable[..., Harness], outbox: Outbox
) -> None:
    h = recovery_harness()
    with h.client() as c:
        r = c.get("/voice2fa/recovery")  # not verified yet: the step-up call, back here after
        assert r.status_code == 303 and r.headers["location"] == "/voice2fa/verify?next=%2Fvoice2fa%2Frecovery"
        page = c.get(r.headers["location"])
        [call] = h.double.wait_for_calls(1)
        done = h.verify(c, call.code() or "", csrf_of(page.text), next_url="/voice2fa/recovery")
        assert done.status_code == 303 and done.headers["location"] == "/voice2fa/recovery"
        page = c.get("/voice2fa/recovery")
        assert "Recovery codes" in page.text and "no recovery codes left" in page.text
        assert "Create new codes" in page.text and "<code>" not in page.text
        created = c.post("/voice2fa/recovery", data={"csrf_token": csrf_of(page.text), "next": "/account"})
        assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
        first = CODE_RE.findall(created.text)
        assert len(first) == 10
        link = r'href="(data:text/plain;charset=utf-8,[^"]+)" download="recovery-codes.txt"'
        download = re.search(link, created.text)
        assert download and all(code in unquote(download.group(1)) for code in first)
        assert "Print" in created.text and "/static/recovery.js" in created.text
        again = c.get("/voice2fa/recovery")
        assert "You have 10 unused codes." in again.text and "<code>" not in again.text  # shown once
        second = create_codes(c)
        assert not set(first) & set(second)
    with h.client() as other:
        h.challenge(other)
        assert use_code(other, first[0]).status_code == 400  # the old set ended
        assert use_code(other, second[0]).status_code == 200
    assert outbox.kinds(wait_for="recovery_code_used").count("recovery_codes_created") == 2
    created_events = [e for e in h.events if e.kind == "recovery_created"]
    assert len(created_events) == 2 and created_events[0].detail["codes"] == 10
    assert all(code not in str(e.detail) for e in h.events for code in first + second)


def test_creating_codes_needs_a_fresh_check_its_users_token_and_this_site(
    recovery_harness: Callable[..., Harness],
) -> None:
    h = recovery_harness()
    with verified_client(h) as c, verified_client(h, "bob") as bob:
        token = csrf_of(c.get("/voice2fa/recovery").text)
        bobs = csrf_of(bob.get("/voice2fa/recovery").text)
        assert c.post("/voice2fa/recovery", data={"csrf_token": bobs}).status_code == 403
        assert c.post("/voice2fa/recovery", data={}).status_code == 403
        cross = c.post("/voice2fa/recovery", data={"csrf_token": token}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        h.clock.offset += 301  # enrol_fresh_within: step-up again
        stale = c.post("/voice2fa/recovery", data={"csrf_token": token})
        assert stale.status_code == 303 and "/voice2fa/verify" in stale.headers["location"]


def test_the_json_twin(recovery_harness: Callable[..., Harness], outbox: Outbox) -> None:
    h = recovery_harness()
    api = {"accept": "application/json"}
    with verified_client(h) as c:
        state = c.get("/voice2fa/recovery", headers=api).json()
        assert state["remaining"] == 0 and state["create_url"] == "/voice2fa/recovery"
        made = c.post("/voice2fa/recovery", json={"csrf_token": state["csrf_token"]}, headers=api)
        assert made.status_code == 201 and made.json()["remaining"] == 10 and len(made.json()["codes"]) == 10
        codes = made.json()["codes"]
    with h.client() as c:
        r = c.get("/account", headers=api)
        assert r.status_code == 401
        form = c.get("/voice2fa/recovery/use", headers=api).json()
        assert form["submit_url"] == "/voice2fa/recovery/use"
        wrong = c.post("/voice2fa/recovery/use", json={"code": "aaaaa-aaaaa", "csrf_token": form["csrf_token"]})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_code"
        # Upper case, spaces and no dash are forgiven.
        typed = codes[3].replace("-", " ").upper()
        used = c.post("/voice2fa/recovery/use", json={"code": typed, "csrf_token": form["csrf_token"]}, headers=api)
        assert used.status_code == 200, used.text
        body = used.json()
        assert body["verified"] is True and body["recovery_codes_left"] == 9 and "9 codes left" in body["message"]
        assert c.get("/account").text == "account: secret page"
    outbox.kinds(wait_for="recovery_code_used")
    _user, _kind, detail = next(n for n in outbox.sent if n[1] == "recovery_code_used")
    assert detail["codes_left"] == 9


# -- using a code ------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_the_verify_page_offers_a_recovery_code_that_works_once(
    store: str, recovery_harness: Callable[..., Harness], outbox: Outbox
) -> None:
    h = recovery_harness(store)
    with verified_client(h) as c:
        codes = create_codes(c)
    with h.client() as c:
        csrf, _call_code = h.challenge(c)
        page = c.get("/voice2fa/verify?next=/account")
        assert "Use a recovery code instead" in page.text and 'action="/voice2fa/recovery/use"' in page.text
        form = {"code": codes[0], "csrf_token": csrf, "next": "/account"}
        used = c.post("/voice2fa/recovery/use", data=form)
        assert used.status_code == 200 and "9 codes left" in used.text
        assert 'href="/account"' in used.text
        assert c.get("/account").text == "account: secret page"
        assert c.get("/voice2fa/verify?next=/account").status_code == 400  # the challenge ended
    with h.client() as again:
        h.challenge(again)
        reused = use_code(again, codes[0])
        assert reused.status_code == 400 and "not right or was already used" in reused.text
        assert again.get("/account").status_code == 303
    failed = [e for e in h.events if e.kind == "failed"]
    assert failed and failed[-1].detail["method"] == "recovery"
    assert ("alice", "recovery_code_used") in [(u, k) for u, k, _d in outbox.sent] or outbox.kinds("recovery_code_used")


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_wrong_recovery_codes_count_towards_the_lockout(
    store: str, recovery_harness: Callable[..., Harness], outbox: Outbox
) -> None:
    h = recovery_harness(store, lockout_failures=3)
    with verified_client(h) as c:
        codes = create_codes(c)
    with h.client() as c:
        statuses = [use_code(c, wrong).status_code for wrong in ("aaaaa-aaaaa", "bbbbb-bbbbb", "ccccc-ccccc")]
        assert statuses == [400, 400, 429]
        locked = use_code(c, codes[0])
        assert locked.status_code == 429 and "Too many wrong codes" in locked.text
        assert c.get("/account").status_code == 429  # no call either
    assert "locked" in outbox.kinds(wait_for="locked")
    if store == "redis":
        return  # Redis expires keys on its own clock, not the test's
    with h.client() as c:  # the lockout ends; a good code then clears the failures
        h.clock.offset += 3601
        assert use_code(c, codes[0]).status_code == 200


def test_a_user_whose_phone_cannot_be_called_uses_a_code_without_a_challenge(
    recovery_harness: Callable[..., Harness],
) -> None:
    h = recovery_harness(allowed_countries=["US", "GB"])
    with verified_client(h) as c:
        codes = create_codes(c)
    with h.client() as c:
        c.cookies.set("test_phone", "+445612345678")  # now a VoIP number: never called
        refused = c.get("/account")
        assert refused.status_code == 403
        link = re.search(r'id="v2fa-recovery" href="([^"]+)"', refused.text)
        assert link and link.group(1).replace("&amp;", "&") == "/voice2fa/recovery/use?next=%2Faccount"
        assert c.get("/account", headers={"accept": "application/json"}).json()["recovery_url"] == link.group(1)
        page = c.get(link.group(1))
        assert page.status_code == 200 and "Use a recovery code" in page.text
        used = c.post(
            "/voice2fa/recovery/use", data={"code": codes[1], "csrf_token": csrf_of(page.text), "next": "/account"}
        )
        assert used.status_code == 200
        assert c.get("/account").text == "account: secret page"
    assert not h.double.create_requests[1:]  # only the first verification's call


def test_the_provider_down_page_links_to_a_recovery_code(recovery_harness: Callable[..., Harness]) -> None:
    h = recovery_harness()
    with verified_client(h) as c:
        create_codes(c)
    h.double.fail_next(500, times=5)
    with h.client() as c:
        r = c.get("/account")
        assert r.status_code in (502, 503), r.text
        assert 'id="v2fa-recovery" href="/voice2fa/recovery/use?next=%2Faccount"' in r.text


def test_the_last_code_says_to_create_a_new_set(
    recovery_harness: Callable[..., Harness], codes_store: MemoryRecoveryCodes
) -> None:
    h = recovery_harness(recovery_codes=2)
    with verified_client(h) as c:
        page = c.get("/voice2fa/recovery")
        made = c.post("/voice2fa/recovery", data={"csrf_token": csrf_of(page.text)})
        codes = CODE_RE.findall(made.text)
        assert len(codes) == 2
    with h.client() as c:
        assert "1 code left" in use_code(c, codes[0]).text
    with h.client() as c:
        last = use_code(c, codes[1])
        assert "That was your last one" in last.text and 'href="/voice2fa/recovery?next=/account"' in last.text


def test_without_a_store_or_with_zero_codes_there_are_no_recovery_pages(
    harness_factory: Callable[..., Harness],
) -> None:
    off = {"recovery_codes": MemoryRecoveryCodes()}
    for h in (harness_factory(), harness_factory(recovery_codes=0, middleware=off)):
        with h.client() as c:
            assert c.get("/voice2fa/recovery").status_code == 404
            h.challenge(c)
            assert "recovery" not in c.get("/voice2fa/verify?next=/account").text


def test_two_uses_of_one_code_at_once_exactly_one_wins(recovery_harness: Callable[..., Harness]) -> None:
    h = recovery_harness()
    with verified_client(h) as c:
        codes = create_codes(c)
    with h.client() as c:
        page = c.get("/voice2fa/recovery/use?next=/account")
        form = {"code": codes[0], "csrf_token": csrf_of(page.text), "next": "/account"}
        cookies = dict(c.cookies)
    results: list[int] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        with httpx.Client(base_url=h.url, cookies=cookies, timeout=30) as client:
            barrier.wait()
            results.append(client.post("/voice2fa/recovery/use", data=form).status_code)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [400] * 7, results


def test_memory_recovery_codes_consume_is_atomic_across_threads() -> None:
    import asyncio

    store = MemoryRecoveryCodes()
    asyncio.run(store.save("u", ["h1", "h2"]))
    wins: list[bool] = []
    barrier = threading.Barrier(16)

    def consume() -> None:
        barrier.wait()
        wins.append(asyncio.run(store.consume("u", "h1")))

    threads = [threading.Thread(target=consume) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and asyncio.run(store.remaining("u")) == 1
    assert not asyncio.run(store.consume("someone else", "h2"))


# -- notifications ----------------------------------------------------------------------------


def test_notifications_for_a_new_device_and_a_new_number(
    harness_factory: Callable[..., Harness], outbox: Outbox
) -> None:
    from .test_enrolment import Accounts, enrol, type_code

    accounts = Accounts({"nina": None, "alice": "+12025550143"})
    middleware = {"identify": accounts.identify, "on_phone_confirmed": accounts.save, "on_notify": outbox}
    h = harness_factory(middleware=middleware)
    with h.client("alice") as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, code, csrf, remember="1").status_code == 303
    with h.client("nina") as c:
        enrol(h, c, "+12025550150")
        assert type_code(h, c, 1).status_code == 303
    outbox.kinds(wait_for="phone_changed")
    assert ("alice", "new_device") in [(u, k) for u, k, _d in outbox.sent]
    _u, _k, detail = next(n for n in outbox.sent if n[1] == "phone_changed")
    assert detail["country"] == "US" and "+12025550150" not in str(detail)
    assert ("nina", "new_device") not in [(u, k) for u, k, _d in outbox.sent]  # not ticked


def test_a_failing_or_slow_hook_never_fails_nor_holds_the_request(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    async def slow(user_id: str, kind: str, detail: Any) -> None:
        import anyio

        await anyio.to_thread.run_sync(release.wait, 10)
        raise RuntimeError("the mail server is down")

    h = harness_factory(middleware={"on_notify": slow})
    with h.client() as c:
        csrf, code = h.challenge(c)
        started = time.monotonic()
        assert h.verify(c, code, csrf, remember="1").status_code == 303
        assert time.monotonic() - started < 5  # answered before the hook ended
        release.set()
        deadline = time.monotonic() + 5
        while "on_notify failed for new_device" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.get("/account").text == "account: secret page"


def test_every_mapped_audit_event_notifies_and_others_do_not() -> None:
    import asyncio

    from voice2fa_middleware import NOTIFICATIONS, AuditEvent
    from voice2fa_middleware._core.notify import Notifier

    seen: list[tuple[str, str]] = []
    audited: list[str] = []
    notifier = Notifier(lambda u, k, d: seen.append((u, k)), then=lambda e: audited.append(e.kind))

    async def run() -> None:
        for kind in [*NOTIFICATIONS, "failed", "call_placed"]:
            await notifier(AuditEvent(kind, "u1", "127.0.0.1", 0.0, {"remembered": 1}))  # type: ignore[arg-type]
        await notifier(AuditEvent("verified", "u1", None, 0.0, {}))
        await notifier(AuditEvent("locked", None, None, 0.0, {}))
        await notifier.drain()

    asyncio.run(run())
    assert sorted(seen) == sorted(("u1", k) for k in NOTIFICATIONS.values())
    assert "call_reported" in dict(seen).values() or ("u1", "call_reported") in seen
    assert len(audited) == len(NOTIFICATIONS) + 4  # the app's own audit hook sees every event


# -- support tasks ----------------------------------------------------------------------------


def middleware_of(h: Harness) -> Any:
    from voice2fa_middleware import Voice2FAMiddleware

    app: Any = h.server.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(app, Voice2FAMiddleware):
        app = app.app
    return app


def on_server(h: Harness, coro: Any) -> Any:
    """Run ``coro`` on the server's event loop (where its store's connections live)."""
    import asyncio

    return asyncio.run_coroutine_threadsafe(coro, h.server.loop).result(timeout=20)  # type: ignore[attr-defined]


def remembered_only(c: httpx.Client) -> None:
    """Keep this browser's remember cookie only, as after the verified cookie expired."""
    for name in list(c.cookies.keys()):
        if name.endswith("verified"):
            c.cookies.delete(name)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_support_sees_the_state_lifts_a_lockout_resets_budgets_and_cancels(
    store: str, harness_factory: Callable[..., Harness]
) -> None:
    h = harness_factory(store=store, lockout_failures=2, calls_per_user_per_hour=2)
    with h.client() as c:
        csrf, code = h.challenge(c)
        h.verify(c, "000000" if code != "000000" else "111111", csrf)
        support = middleware_of(h).support
        state = on_server(h, support.state("alice"))
        assert state.challenge is not None and state.challenge["calls"] == 1
        assert state.challenge["phone"] == "•••• 0143" and state.challenge["attempts"] == 1
        assert state.failures == 1 and state.locked_for == 0
        assert state.budgets["user"].used == 1 and state.budgets["user"].limit == 2
        assert state.phone == "•••• 0143" and state.budgets["known_phone"].used == 0
        h.verify(c, "000000" if code != "000000" else "111111", csrf)
        assert c.get("/account").status_code == 429
        locked = on_server(h, support.state("alice"))
        assert locked.locked_for > 3000 and locked.challenge is None
        on_server(h, support.lift_lockout("alice", operator="ops-ann"))
        assert on_server(h, support.state("alice")).locked_for == 0
        csrf, code = h.challenge(c)  # a call again (the second of the user's budget of 2)
        assert on_server(h, support.cancel_challenge("alice", operator="ops-ann")) is True
        assert h.verify(c, code, csrf).status_code == 400  # the canceled challenge's code is dead
        assert on_server(h, support.state("alice")).budgets["user"].used == 2
        assert c.get("/account").status_code == 429  # the user's budget is spent
        names = on_server(h, support.reset_budgets("alice", operator="ops-ann", phone="+12025550143"))
        assert set(names) == {"user", "known_phone", "enrol_user"}
        assert on_server(h, support.state("alice")).budgets["user"].used == 0
        h.challenge(c)
    actions = [(e.detail["action"], e.detail["operator"]) for e in h.events if e.kind == "support"]
    assert actions == [
        ("lift_lockout", "ops-ann"),
        ("cancel_challenge", "ops-ann"),
        ("reset_budgets", "ops-ann"),
    ]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_forget_devices_ends_remembered_devices_at_their_next_use(
    store: str, harness_factory: Callable[..., Harness]
) -> None:
    h = harness_factory(store=store)
    with h.client() as laptop, h.client() as phone:
        for c in (laptop, phone):
            csrf, code = h.challenge(c)
            assert h.verify(c, code, csrf, remember="1").status_code == 303
            remembered_only(c)
        assert laptop.get("/account").status_code == 200  # the remember cookie alone proves it
        support = middleware_of(h).support
        on_server(h, support.forget_devices("alice", operator="ops-bo"))
        assert laptop.get("/account").status_code == 303  # must verify again
        assert phone.get("/account").status_code == 303
        assert on_server(h, support.state("alice")).devices_forgotten_at > 0
        time.sleep(2.1)  # proofs carry whole seconds; one within a second of the forget counts as before it
        page = phone.get("/voice2fa/verify?next=/account")  # the challenge the laptop's visit started
        [*_, call] = h.double.wait_for_calls(3)
        assert h.verify(phone, call.code() or "", csrf_of(page.text), remember="1").status_code == 303
        remembered_only(phone)
        assert phone.get("/account").status_code == 200  # a device remembered after it counts
    forgot = [e for e in h.events if e.kind == "support"]
    assert forgot[0].detail == {"action": "forget_devices", "operator": "ops-bo"}


def test_another_process_forgetting_devices_is_seen_within_a_minute(harness_factory: Callable[..., Harness]) -> None:
    from voice2fa_middleware import Support

    h = harness_factory()
    with h.client() as c:
        csrf, code = h.challenge(c)
        h.verify(c, code, csrf, remember="1")
        remembered_only(c)
        assert c.get("/account").status_code == 200
        settings, store = h.middleware_kwargs["settings"], h.middleware_kwargs["store"]
        elsewhere = Support(settings, store, clock=h.clock)  # as another worker, the same store
        on_server(h, elsewhere.forget_devices("alice", operator="cli"))
        assert c.get("/account").status_code == 200  # this process's answer is a minute old
        h.clock.offset += 61
        assert c.get("/account").status_code == 303


def test_the_support_command_works_against_redis(harness_factory: Callable[..., Harness], redis_server: Any) -> None:
    import subprocess
    import sys

    import redis

    from voice2fa_middleware import RedisStore

    from .conftest import ROOT, SECRET

    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(url).flushdb()
    h = harness_factory(store=RedisStore(url), lockout_failures=1)
    with h.client() as c:
        csrf, code = h.challenge(c)
        assert h.verify(c, "000000" if code != "000000" else "111111", csrf).status_code == 429
    # The settings the app reads: the same secret key and lockout rule.
    env = {
        "VOICE2FA_REDIS_URL": url,
        "VOICE2FA_SECRET_KEY": SECRET,
        "VOICE2FA_LOCKOUT_FAILURES": "1",
        "PATH": "/usr/bin:/bin",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voice2fa_middleware", "support", *args, "--env-file", "none"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    state = cli("state", "alice", "--json")
    assert state.returncode == 0, state.stderr
    body = json.loads(state.stdout)
    assert body["failures"] == 1 and body["locked_for"] > 0 and body["budgets"]["user"]["used"] == 1
    lifted = cli("lift-lockout", "alice", "--operator", "ops-cy")
    assert lifted.returncode == 0 and "lifted: true" in lifted.stdout
    assert "support user=alice" in lifted.stderr and "operator=ops-cy" in lifted.stderr
    assert json.loads(cli("state", "alice", "--json").stdout)["locked_for"] == 0
    assert cli("forget-devices", "alice").returncode == 0
    assert cli("cancel-challenge", "alice", "--json").returncode == 0
    no_redis = subprocess.run(
        [sys.executable, "-m", "voice2fa_middleware", "support", "state", "alice", "--env-file", "none"],
        env={"VOICE2FA_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_redis.returncode == 2 and "VOICE2FA_REDIS_URL" in no_redis.stderr

"""Round three: a budget is spent only by a call the provider accepted (S26), a proof earned is
never lost to a store hiccup (S28), and what a load and fault run found (status order, clients
that leave mid-body, busy connection pools, stale connections, a provider's 429)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from voice2fa_middleware import (
    Bucket,
    Challenge,
    MemoryStore,
    ProviderUnavailableError,
    RedisStore,
    SignalWireCaller,
    Store,
    Voice2FAMiddleware,
    Voice2FASettings,
)
from voice2fa_middleware.callers import BaseCaller
from voice2fa_middleware.testing import SignalWireDouble

from .conftest import SECRET, Harness, RedisServer, csrf_of, identify, make_store

STORES = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


class ControlledCaller(BaseCaller):
    """A caller of the app's own (on equal terms with ours, through the capabilities it
    declares): it can be paused, or refuse calls as a half-open circuit does."""

    def __init__(self) -> None:
        self.placed: list[str] = []
        self.paused = 0.0
        self.unavailable = False

    def paused_for(self) -> float:
        return self.paused

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        if self.paused or self.unavailable:
            raise ProviderUnavailableError("calls are paused", retry_after=1.0)
        self.placed.append(to)
        return f"CA{len(self.placed)}"


def _verify_page_csrf(c: httpx.Client) -> str:
    page = c.get("/voice2fa/verify?next=/account")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@pytest.mark.parametrize("store", STORES)
def test_a_resend_while_calls_are_paused_costs_no_budget(harness_factory: Callable[..., Harness], store: str) -> None:
    caller = ControlledCaller()
    h = harness_factory(store=store, caller=caller, calls_per_user_per_hour=2)
    with h.client() as c:
        assert c.get("/account").status_code == 303
        assert len(caller.placed) == 1
        csrf = _verify_page_csrf(c)
        h.clock.offset += 31
        caller.paused = 20.0  # the provider fails: the circuit opens
        paused = c.post("/voice2fa/resend", data={"csrf_token": csrf, "next": "/account"})
        assert paused.status_code == 503 and paused.headers["retry-after"] == "20"
        caller.paused = 0.0  # it recovers
        again = c.post("/voice2fa/resend", data={"csrf_token": csrf, "next": "/account"})
        assert again.status_code == 303, again.text  # was 429 for an hour: the paused try had been charged
        assert len(caller.placed) == 2


@pytest.mark.parametrize("store", STORES)
def test_calls_refused_during_a_half_open_trial_cost_no_budget(
    harness_factory: Callable[..., Harness], store: str
) -> None:
    caller = ControlledCaller()
    h = harness_factory(store=store, caller=caller, calls_per_user_per_hour=2)
    caller.unavailable = True  # paused_for() is 0, yet the call is refused (another request holds the trial)
    with h.client() as c:
        for _ in range(4):
            refused = c.get("/account")
            assert refused.status_code == 503 and "retry-after" in refused.headers
        caller.unavailable = False
        assert c.get("/account").status_code == 303  # was 429: each refused try had been charged
        assert len(caller.placed) == 1


@pytest.mark.parametrize("store", STORES)
def test_failed_create_calls_cost_no_budget(harness_factory: Callable[..., Harness], store: str) -> None:
    h = harness_factory(store=store, calls_per_user_per_hour=2)
    with h.client() as c:
        for _ in range(3):
            h.double.fail_next(500)
            failed = c.get("/account")
            assert failed.status_code == 503 and "retry-after" in failed.headers, failed.text
        assert c.get("/account").status_code == 303  # was 429 with Retry-After ~3600
        h.double.wait_for_calls(1)
    refused = [e for e in h.events if e.kind == "budget_exhausted"]
    assert refused == []


def test_a_consumed_code_is_not_lost_to_a_store_failing_after_it(harness_factory: Callable[..., Harness]) -> None:
    class FailsAfterConsume(MemoryStore):
        fail = False

        async def clear(self, key: str) -> None:
            if self.fail:
                raise ConnectionError("the pool is exhausted")
            await super().clear(key)

        async def hit(self, key: str, window: int, now: float, *, renew: bool = False) -> tuple[int, float]:
            if self.fail:
                raise ConnectionError("the pool is exhausted")
            return await super().hit(key, window, now, renew=renew)

    store = FailsAfterConsume()
    h = harness_factory(store=store)
    with h.client() as c:
        csrf, code = h.challenge(c)
        store.fail = True
        r = h.verify(c, code, csrf)
        assert r.status_code == 303 and r.headers["location"] == "/account"  # was 503, the code then gone
        assert c.get("/account").status_code == 200
    assert len(h.double.calls) == 1  # no second call was needed


@pytest.mark.parametrize("store", STORES)
def test_the_known_phone_window_slides_with_each_verification(store: str, request: pytest.FixtureRequest) -> None:
    async def run() -> None:
        now = time.time()
        s = make_store(store, request)
        try:
            await s.hit("known:x", 10, now)
            count, left = await s.hit("known:x", 100, now, renew=True)
            assert count == 2 and left > 50  # renewed: a fixed window would have 10 s left
            _count, fixed = await s.hit("known:y", 10, now)
            _count, fixed = await s.hit("known:y", 100, now)
            assert fixed <= 10
        finally:
            await s.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("store", STORES)
def test_refund_gives_back_one_hit_and_never_goes_below_zero(store: str, request: pytest.FixtureRequest) -> None:
    async def run() -> None:
        now = time.time()
        s = make_store(store, request)
        buckets = [Bucket("calls:a", 2, 3600, "a"), Bucket("calls:b", 2, 3600, "b")]
        try:
            assert await s.take(buckets, now) == 0
            assert await s.take(buckets, now) == 0
            assert await s.take(buckets, now) > 0  # both spent
            await s.refund(buckets, now)
            assert await s.take(buckets, now) == 0  # one given back
            await s.refund([Bucket("calls:none", 2, 3600)], now)
            assert (await s.peek("calls:none", now))[0] == 0
        finally:
            await s.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("store", STORES)
def test_the_call_status_only_moves_forward(store: str, request: pytest.FixtureRequest) -> None:
    async def run() -> None:
        s: Store = make_store(store, request)
        now = time.time()
        user = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
        ch = Challenge(
            id=user[:4] + ".st", user_tag=user, phone="+12025550143", created_at=now, expires_at=now + 60,
            code_mac="", call_nonce="n1", call_status="queued",
        )
        try:
            await s.create(ch)
            for status in ["ringing", "completed", "in-progress", "ringing", "initiated"]:
                await s.update_call(ch.id, "n1", status=status)
            got = await s.get(ch.id)
            assert got is not None and got.call_status == "completed"  # was "initiated"
            await s.update_call(ch.id, "n1", status="busy")  # final to final: kept as said
            got = await s.get(ch.id)
            assert got is not None and got.call_status == "busy"
        finally:
            await s.aclose()

    asyncio.run(run())


def test_a_client_leaving_mid_body_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached
        raise AssertionError

    middleware = Voice2FAMiddleware(
        app, identify=identify, caller=ControlledCaller(), settings=Voice2FASettings(secret_key=SECRET)
    )
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "http.request", "body": b"code=12", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/voice2fa/verify",
        "raw_path": b"/voice2fa/verify",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    caplog.clear()  # what setting up said (no public URL) is not this test's
    with caplog.at_level(logging.DEBUG, logger="voice2fa"):
        asyncio.run(middleware(scope, receive, send))
    assert sent == []  # nobody to answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # was an ERROR with a 3 KB traceback
    assert any("disconnected" in r.getMessage() for r in caplog.records)


def test_a_provider_429_is_back_pressure_not_an_outage() -> None:
    double = SignalWireDouble().start()
    try:
        caller = SignalWireCaller(
            space=double.url, project=double.project, token=double.token, failure_threshold=2, deadline=0.3
        )

        async def run() -> None:
            for _ in range(4):
                double.fail_next(429, headers={"Retry-After": "5"})
                with pytest.raises(Exception) as info:
                    await caller.place_call(
                        to="+12025550143", from_="+12025550100", laml_url="http://x/l", status_url="http://x/s"
                    )
                assert getattr(info.value, "status", None) == 429
            assert caller.state == "closed" and caller.paused_for() == 0  # was open after two
            await caller.aclose()

        asyncio.run(run())
    finally:
        double.stop()


def test_the_circuit_probes_sooner_after_a_short_outage() -> None:
    from voice2fa_middleware._telephony.breaker import Breaker

    now = [0.0]
    breaker = Breaker(1, 30.0, lambda: now[0], None, first_cooldown=5.0)
    breaker.failure()
    assert breaker.paused_for() == 5.0
    now[0] = 5.0
    assert breaker.admit() is True  # the trial
    breaker.failure()  # failed: twice as long
    breaker.trial = False  # as the caller does when its try ends
    assert breaker.paused_for() == 10.0
    now[0] = 15.0
    breaker.admit()
    breaker.failure()
    breaker.trial = False
    now[0] = 35.0
    breaker.admit()
    breaker.failure()
    breaker.trial = False
    assert breaker.paused_for() == 30.0  # never past the cool-down
    now[0] = 65.0
    breaker.admit()
    breaker.success()
    breaker.trial = False
    breaker.failure()
    assert breaker.paused_for() == 5.0  # a new outage starts short again


@pytest.mark.redis
def test_a_busy_connection_pool_waits_instead_of_failing(redis_server: RedisServer) -> None:
    async def run() -> None:
        store = RedisStore(redis_server.url, timeout=2.0, max_connections=2, key_prefix="pool:")
        try:
            results = await asyncio.gather(*(store.get(f"abcd.{n}") for n in range(60)), return_exceptions=True)
            assert [r for r in results if isinstance(r, BaseException)] == []  # was MaxConnectionsError
        finally:
            await store.aclose()

    asyncio.run(run())


def test_the_pool_size_is_a_setting() -> None:
    settings = Voice2FASettings.from_env({"VOICE2FA_REDIS_MAX_CONNECTIONS": "7"}, env_file=None, secret_key=SECRET)
    assert settings.redis_max_connections == 7
    with pytest.raises(Exception, match="redis_max_connections"):
        Voice2FASettings(secret_key=SECRET, redis_max_connections=0)


@pytest.mark.redis
def test_reads_survive_a_redis_restart_on_a_fresh_connection(redis_server: RedisServer) -> None:
    own = RedisServer(redis_server.binary)
    own.start()

    async def run() -> None:
        store = RedisStore(own.url, timeout=2.0, key_prefix="restart:")
        try:
            assert await store.get("abcd.x") is None  # the pool now holds a connection
            own.stop()
            own.start()  # that pooled connection is now stale
            assert await store.get("abcd.x") is None  # was StoreError: one 503 for nothing
            assert await store.peek("calls:x", time.time()) == (0, 0.0)
        finally:
            await store.aclose()

    try:
        asyncio.run(run())
    finally:
        own.stop()


def test_a_pool_error_says_what_failed() -> None:
    from voice2fa_middleware._stores.redis import _pool_exhausted

    class MaxConnectionsError(Exception):
        pass

    assert _pool_exhausted(MaxConnectionsError("Too many connections"))
    assert _pool_exhausted(ConnectionError("No connection available."))
    assert not _pool_exhausted(ConnectionError("Connection refused"))



class CuttingProxy:
    """A TCP proxy in front of redis-server that, once armed, cuts the connection of the
    first command whose bytes contain ``marker`` (before Redis sees it): a store failing on
    one chosen step, as a dropped connection or a busy pool does."""

    def __init__(self, upstream_port: int, marker: bytes) -> None:
        import socket
        import threading

        self.marker, self.armed, self.cuts = marker, False, 0
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: Any, target: Any, inspect: bool) -> None:
        try:
            while data := source.recv(65536):
                if inspect and self.armed and self.marker in data:
                    self.armed = False
                    self.cuts += 1
                    source.close()
                    target.close()
                    return
                target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


@pytest.mark.redis
def test_a_right_code_survives_redis_failing_on_the_steps_after_it(
    harness_factory: Callable[..., Harness], redis_server: RedisServer
) -> None:
    port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    proxy = CuttingProxy(port, b":known:")  # the step that remembers the phone, after the code
    try:
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", key_prefix=f"cut{time.time_ns()}:", timeout=1.0)
        h = harness_factory(store=store, store_timeout=2.0)
        with h.client() as c:
            csrf, code = h.challenge(c)
            proxy.armed = True
            r = h.verify(c, code, csrf)
            assert proxy.cuts == 1  # the step after the consume did fail
            assert r.status_code == 303 and r.headers["location"] == "/account"  # was 503, then a new call
            assert c.get("/account").status_code == 200
        assert len(h.double.calls) == 1
    finally:
        proxy.close()

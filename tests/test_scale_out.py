"""Scale-out on real distributed Redis: the example app on a three-node Redis Cluster with two
uvicorn workers, and on a Sentinel-managed master that fails over while it serves."""

from __future__ import annotations

import shlex
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from voice2fa_middleware import Bucket, Challenge, challenge_id
from voice2fa_middleware._stores.base import own_slot, user_key
from voice2fa_middleware._stores.redis_connect import SENTINEL_PORT, _hosts, connect
from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import cluster_url, csrf_of, example_env, wrong_for
from .redis_servers import RedisSentinelSet

# -- our URL forms ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_sentinel_and_cluster_urls_are_read_as_documented() -> None:
    user, password, hosts = _hosts("app:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:26381", SENTINEL_PORT)
    assert (user, password) == ("app", "s@cret")
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)]
    assert _hosts(":pw@h", 6379)[:2] == (None, "pw")
    sentinel = connect(
        "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/3?sentinel_password=sp", timeout=1, max_connections=5
    )
    assert not sentinel.cluster and len(sentinel.others) == 2
    pool = sentinel.client.connection_pool
    assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    assert sentinel.others[0].connection_pool.connection_kwargs["password"] == "sp"
    cluster = connect("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", timeout=1, max_connections=5)
    assert cluster.cluster
    plain = connect("rediss://example.invalid:6380/0", timeout=1, max_connections=5)
    assert not plain.cluster
    tls = connect(
        "rediss+sentinel://10.0.0.1/mymaster?ssl_ca_certs=/etc/ca.pem&sentinel_password=sp",
        timeout=1,
        max_connections=5,
    )
    kwargs = tls.client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem" and kwargs["ssl_check_hostname"] is True
    tls_cluster = connect("rediss+cluster://10.0.0.1?ssl_check_hostname=false", timeout=1, max_connections=5)
    assert tls_cluster.cluster


@pytest.mark.redis
@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",  # no service name
        "redis+sentinel://127.0.0.1:26379/mymaster/zero",
        "redis+sentinel://127.0.0.1:x/mymaster",
        "redis+sentinel:///mymaster",
        "redis+cluster://127.0.0.1:7000/2",  # a cluster has database 0 only
        "redis+cluster://127.0.0.1:7000?ssl_ca_certs=/ca.pem",  # TLS options without TLS
        "rediss+cluster://127.0.0.1:7000?sslcacerts=/ca.pem",  # a misspelt option: refused
        "rediss+sentinel://127.0.0.1:26379/mymaster?ssl_ca_cert=/ca.pem",
    ],
)
def test_bad_scale_out_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError):
        connect(url, timeout=1, max_connections=5)


# -- the example app, through HTTP only ------------------------------------------------------------


def _sign_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=20)
    assert client.post("/login", data={"username": "demo", "password": "demo"}).status_code == 303
    return client


def _verify(client: httpx.Client, double: SignalWireDouble, calls: int) -> None:
    r = client.get("/account")
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    double.wait_for_calls(calls)
    code = double.calls[-1].code()
    assert code
    ok = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
    assert ok.status_code == 303, ok.text
    assert client.get("/account").status_code == 200


@pytest.mark.redis
def test_example_on_a_redis_cluster_with_two_workers(redis_cluster: Any, uvicorn_factory: Callable[..., Any]) -> None:
    redis_cluster.flushall()
    with SignalWireDouble() as double:
        port = port_for_later()
        env = example_env(double, port, cluster_url(redis_cluster.url))
        app = uvicorn_factory("examples.starlette_app:app", env, port=port, workers=2)
        first = _sign_in(app.url)
        _verify(first, double, 1)
        # A second browser: attempts are counted in the cluster, whichever worker answers
        # (each request on a new connection).
        other = _sign_in(app.url)
        r = other.get("/account")
        assert r.status_code == 303
        page = other.get(r.headers["location"])
        double.wait_for_calls(2)
        code = double.calls[-1].code()
        assert code
        for left in (4, 3, 2):
            bad = httpx.post(
                app.url + "/voice2fa/verify",
                data={"code": wrong_for(code), "csrf_token": csrf_of(page.text)},
                cookies=other.cookies,
            )
            assert f"{left} attempts left" in bad.text
        ok = other.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})
        assert ok.status_code == 303
        assert other.get("/account").status_code == 200
        assert len(double.calls) == 2  # no visit placed a second call


@pytest.mark.redis
def test_sentinel_failover_fails_closed_then_recovers(redis_sentinel: Any, uvicorn_factory: Callable[..., Any]) -> None:
    """The master dies while the app serves: protected routes answer 503 (never 200) until
    the sentinels promote the replica; then challenges work again with no restart."""
    sentinels = RedisSentinelSet(redis_sentinel.server_binary, redis_sentinel.sentinel_binary)
    sentinels.start()
    try:
        with SignalWireDouble() as double:
            port = port_for_later()
            env = {**example_env(double, port, sentinels.url), "VOICE2FA_STORE_TIMEOUT": "1"}
            app = uvicorn_factory("examples.starlette_app:app", env, port=port)
            verified = _sign_in(app.url)
            _verify(verified, double, 1)
            # A challenge in flight when the master dies.
            in_flight = _sign_in(app.url)
            r = in_flight.get("/account")
            assert r.status_code == 303
            in_flight_page = in_flight.get(r.headers["location"])
            double.wait_for_calls(2)
            in_flight_code = double.calls[-1].code()
            assert in_flight_code

            old = sentinels.kill_master()
            killed_at = time.monotonic()
            statuses: list[int] = []
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                fresh = _sign_in(app.url)
                status = fresh.get("/account").status_code
                statuses.append(status)
                assert status in (503, 303), status  # never 200: no access without the factor
                if status == 303:
                    break
                time.sleep(0.2)
            assert statuses[0] == 503, statuses  # the store was down: fail closed
            assert statuses[-1] == 303, f"no recovery: {statuses}"
            assert sentinels.master_port() != old
            print(f"failover: {len(statuses) - 1} answers of 503, then 303, {time.monotonic() - killed_at:.1f} s")
            # A verified user's proof is a signed cookie: it needs no store and still works.
            assert verified.get("/account").status_code == 200
            # After the failover, a whole flow works, without restarting the app (the same
            # user: the challenge the last probe started, whose call is the newest).
            _verify(_sign_in(app.url), double, len(double.calls))
            # The challenge in flight: kept if it reached the replica before the master died,
            # else lost (the user asks for a new call). Either way a wrong code never passes.
            wrong = in_flight.post(
                "/voice2fa/verify", data={"code": wrong_for(in_flight_code), "csrf_token": csrf_of(in_flight_page.text)}
            )
            assert wrong.status_code in (400, 429) and in_flight.get("/account").status_code != 200
    finally:
        sentinels.stop()


def test_sentinel_binaries_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Locally, the Sentinel tests skip with the package to install (CI must have them)."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    from .conftest import _redis_binaries

    with pytest.raises(pytest.skip.Exception, match="redis-sentinel"):
        _redis_binaries("Redis Sentinel", {"redis-sentinel": "redis-sentinel"})


# -- an ACL user with only the store's commands, as the documentation gives it ------------------------


def _readme_acl(extra: list[str]) -> list[str]:
    """The ``ACL SETUSER`` command of docs/operations/scale.md, as arguments, with a test password."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "operations" / "scale.md").read_text()
    line = next(x for x in page.splitlines() if x.startswith("redis-cli ACL SETUSER voice2fa"))
    args = shlex.split(line)[1:]
    return [a.replace("CHANGE-ME", "acl-test-pw") for a in args] + extra


async def _exercise(store: Any) -> None:
    """Every store operation the middleware uses, once."""
    user = uuid.uuid4().hex
    ch = Challenge(
        id=challenge_id(user), user_tag=user, phone="+12025550143", code_mac="m", created_at=time.time(),
        expires_at=time.time() + 60, binding="b", calls=1, call_nonce="n1",
    )  # fmt: skip
    lockout = Bucket("fail:" + user_key(user), 5, 60)
    budget = [Bucket("calls:user:" + user_key(user), 5, 60), Bucket("calls:phone:" + own_slot(user), 5, 60)]
    started = await store.start(
        ch, lockout=lockout, known_key="known:" + user_key(user), known=budget, new=budget, now=time.time()
    )
    assert started.created
    assert (await store.live_challenge(user)).id == ch.id
    assert (await store.reserve_attempt(ch.id, 5, lockout=lockout, now=time.time())).challenge is not None
    assert await store.update_call(ch.id, "n1", call_sid="CA1", status="ringing") is not None
    assert (
        await store.begin_call(
            ch.id, code_mac="m2", code="1", call_nonce="n2", now=time.time() + 60, cooldown=1, max_calls=3
        )
        == 0
    )
    await store.rollback_call(ch.id, "n2", ch)
    assert await store.consume(ch.id, "m") is True
    assert await store.get(ch.id) is None
    assert await store.take(budget, time.time()) == 0
    assert (await store.hit(lockout.key, 60, time.time()))[0] == 2
    assert (await store.peek(lockout.key, time.time()))[0] == 2
    await store.clear(lockout.key)
    assert await store.reserve_slot("pace:" + user, 1.0, time.time(), 10.0) == 0  # the pacer of calls
    await store.delete(ch.id)
    await store.ping()


@pytest.mark.redis
@pytest.mark.anyio
async def test_the_store_runs_as_the_readme_acl_user(redis_server: Any) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import NoPermissionError

    from voice2fa_middleware import RedisStore

    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.execute_command(*_readme_acl([]))
    url = redis_server.url.replace("redis://", "redis://voice2fa:acl-test-pw@")
    store = RedisStore(url)
    try:
        await _exercise(store)
        limited = aioredis.Redis.from_url(url)
        with pytest.raises(NoPermissionError):
            await limited.flushall()
        with pytest.raises(NoPermissionError):
            await limited.get("other-app:secret")  # keys outside voice2fa:*
        await limited.aclose()
    finally:
        await store.aclose()
        await admin.execute_command("ACL", "DELUSER", "voice2fa")
        await admin.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_the_store_runs_as_the_readme_acl_user_on_a_cluster(redis_cluster: Any) -> None:
    import redis.asyncio as aioredis

    from voice2fa_middleware import RedisStore

    extra = ["+cluster|slots", "+cluster|shards", "+command", "+info"]
    for node in redis_cluster.urls:
        admin = aioredis.Redis.from_url(node)
        await admin.execute_command(*_readme_acl(extra))
        await admin.aclose()
    url = cluster_url(redis_cluster.url).replace("redis+cluster://", "redis+cluster://voice2fa:acl-test-pw@")
    store = RedisStore(url)
    try:
        await _exercise(store)
    finally:
        await store.aclose()
        for node in redis_cluster.urls:
            admin = aioredis.Redis.from_url(node)
            await admin.execute_command("ACL", "DELUSER", "voice2fa")
            await admin.aclose()

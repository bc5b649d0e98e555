"""One suite, unchanged, for every store: MemoryStore and RedisStore (real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from voice2fa_middleware import Bucket, Challenge, MemoryStore, Store, StoreError, StoreFullError

from .conftest import make_store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    s = make_store(request.param, request)
    yield s
    await s.aclose()


LOCKOUT = Bucket("fail:u", 1000, 3600)


async def reserve(store: Store, cid: str, max_attempts: int) -> Challenge | None:
    """One attempt, under a lockout too high to matter here."""
    return (await store.reserve_attempt(cid, max_attempts, lockout=LOCKOUT, now=time.time())).challenge


def challenge(cid: str = "c1", ttl: float = 60.0, **kw: object) -> Challenge:
    now = time.time()
    return Challenge(
        id=cid, user_tag="u", phone="+12025550143", code_mac="", created_at=now, expires_at=now + ttl, **kw
    )  # type: ignore[arg-type]


async def test_create_fetch_and_delete(store: Store) -> None:
    await store.create(challenge())
    got = await store.get("c1")
    assert got is not None and got.user_tag == "u" and got.phone == "+12025550143" and got.attempts == 0
    assert await store.get("nope") is None
    await store.delete("c1")
    assert await store.get("c1") is None


async def test_expiry_is_enforced_by_the_store(store: Store) -> None:
    await store.create(challenge(ttl=0.3))
    assert await store.get("c1") is not None
    await asyncio.sleep(0.5)  # a real TTL: the store itself must drop it
    assert await store.get("c1") is None
    assert await reserve(store, "c1", 5) is None


async def test_memory_store_follows_its_clock() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.create(Challenge(id="c", user_tag="u", phone="p", code_mac="", created_at=1000, expires_at=1300))
    now[0] = 1299
    assert await store.get("c") is not None
    now[0] = 1300.5
    assert await store.get("c") is None


async def test_attempts_are_counted_and_capped(store: Store) -> None:
    await store.create(challenge())
    seen = [await reserve(store, "c1", 3) for _ in range(5)]
    assert [c.attempts if c else None for c in seen] == [1, 2, 3, None, None]


async def test_attempts_are_atomic_under_concurrency(store: Store) -> None:
    await store.create(challenge())
    results = await asyncio.gather(*(reserve(store, "c1", 5) for _ in range(50)))
    assert sum(r is not None for r in results) == 5


async def test_consume_once_under_50_concurrent_callers(store: Store) -> None:
    await store.create(challenge())
    assert (
        await store.begin_call(
            "c1", code_mac="m1", code="123456", call_nonce="n1", now=time.time(), cooldown=0, max_calls=3
        )
        == 0
    )
    results = await asyncio.gather(*(store.consume("c1", "m1") for _ in range(50)))
    assert results.count(True) == 1
    assert await store.get("c1") is None


async def test_consume_refuses_a_replaced_code(store: Store) -> None:
    await store.create(challenge())
    now = time.time()
    await store.begin_call("c1", code_mac="old", code="1", call_nonce="n1", now=now, cooldown=0, max_calls=3)
    await store.begin_call("c1", code_mac="new", code="2", call_nonce="n2", now=now + 31, cooldown=30, max_calls=3)
    assert await store.consume("c1", "old") is False
    assert await store.consume("c1", "") is False
    assert await store.consume("c1", "new") is True


async def test_call_slots_cooldown_and_limit(store: Store) -> None:
    await store.create(challenge())
    t = time.time()
    kw = dict(code_mac="m", code="c", cooldown=30, max_calls=3)
    assert await store.begin_call("c1", call_nonce="a", now=t, **kw) == 0  # type: ignore[arg-type]
    wait = await store.begin_call("c1", call_nonce="b", now=t + 10, **kw)  # type: ignore[arg-type]
    assert wait is not None and 19 < wait <= 20
    assert await store.begin_call("c1", call_nonce="b", now=t + 31, **kw) == 0  # type: ignore[arg-type]
    assert await store.begin_call("c1", call_nonce="c", now=t + 62, **kw) == 0  # type: ignore[arg-type]
    refused = await store.begin_call("c1", call_nonce="d", now=t + 93, **kw)  # type: ignore[arg-type]
    assert refused is not None and refused > 0
    got = await store.get("c1")
    assert got is not None and got.calls == 3 and got.call_nonce == "c" and got.call_status == "queued"
    assert await store.begin_call("gone", call_nonce="x", now=t, **kw) is None  # type: ignore[arg-type]


async def test_update_call_needs_the_current_nonce_and_binds_the_sid_once(store: Store) -> None:
    await store.create(challenge())
    await store.begin_call("c1", code_mac="m", code="123456", call_nonce="n1", now=time.time(), cooldown=0, max_calls=3)
    assert await store.update_call("c1", "wrong", status="ringing") is None
    assert await store.update_call("c1", "", status="ringing") is None
    first = await store.update_call("c1", "n1", call_sid="CA1", status="ringing")
    assert first is not None and first.call_sid == "CA1" and first.call_status == "ringing"
    second = await store.update_call("c1", "n1", call_sid="CA2", status="completed", drop_code=True)
    assert second is not None and second.call_sid == "CA1" and second.code == "" and second.code_mac == "m"


async def test_rollback_restores_the_previous_call(store: Store) -> None:
    await store.create(challenge())
    t = time.time()
    await store.begin_call("c1", code_mac="m1", code="111111", call_nonce="n1", now=t, cooldown=0, max_calls=3)
    before = await store.get("c1")
    assert before is not None
    await store.begin_call("c1", code_mac="m2", code="222222", call_nonce="n2", now=t + 40, cooldown=30, max_calls=3)
    await store.rollback_call("c1", "n2", before)
    after = await store.get("c1")
    assert after is not None and after.code_mac == "m1" and after.calls == 1 and after.call_nonce == "n1"


async def test_take_is_all_or_nothing(store: Store) -> None:
    now = time.time()
    a, b = Bucket("a", 2, 3600), Bucket("b", 1, 3600)
    assert await store.take([a, b], now) == 0
    wait = await store.take([a, b], now)
    assert 3500 < wait <= 3600
    assert (await store.peek("a", now))[0] == 1  # nothing counted on refusal
    assert await store.take([a], now) == 0
    assert await store.take([a], now) > 0


async def test_counters_hit_peek_clear_and_expire(store: Store) -> None:
    now = time.time()
    assert await store.peek("k", now) == (0, 0.0)
    assert (await store.hit("k", 1, now))[0] == 1
    count, left = await store.hit("k", 1, now)
    assert count == 2 and 0 < left <= 1
    await store.clear("k")
    assert (await store.peek("k", now))[0] == 0
    await store.hit("k", 1, time.time())
    await asyncio.sleep(1.2)
    assert (await store.peek("k", time.time()))[0] == 0


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_memory_store_is_bounded_and_refuses_when_full() -> None:
    store = MemoryStore(max_challenges=3)
    for n in range(3):
        await store.create(challenge(f"c{n}"))
    with pytest.raises(StoreFullError):
        await store.create(challenge("c3"))
    assert await store.get("c0") is not None  # live challenges are never evicted


@pytest.mark.redis
async def test_redis_store_fails_closed_with_store_error() -> None:
    from voice2fa_middleware import RedisStore

    dead = RedisStore("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(StoreError):
        await dead.get("c1")
    with pytest.raises(StoreError):
        await dead.take([Bucket("a", 1, 60)], time.time())
    await dead.aclose()


@pytest.mark.redis
async def test_redis_keys_are_namespaced_and_carry_ttls(redis_server: object) -> None:
    import redis.asyncio as aioredis

    from voice2fa_middleware import RedisStore

    url = redis_server.url  # type: ignore[attr-defined]
    store = RedisStore(url, key_prefix="myapp:2fa:")
    await store.create(challenge(ttl=120))
    await store.hit("fail:u", 3600, time.time())
    raw = aioredis.Redis.from_url(url)
    keys = sorted(k.decode() for k in await raw.keys("myapp:2fa:*"))
    assert keys == ["myapp:2fa:ch:c1", "myapp:2fa:n:fail:u", "myapp:2fa:u:u"]
    for key in keys:
        assert 0 < await raw.ttl(key) <= 3600
    await raw.aclose()
    await store.aclose()

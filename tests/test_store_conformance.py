"""One suite, unchanged, for every store: MemoryStore, and RedisStore on a real redis-server and on a
real three-node Redis Cluster (keys of one user share a slot; shared budgets span nodes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from voice2fa_middleware import Bucket, Challenge, MemoryStore, Start, Store, StoreError, StoreFullError
from voice2fa_middleware._stores.base import own_slot, user_key

from .conftest import make_store

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis), pytest.param("cluster", marks=pytest.mark.redis)]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    s = make_store(request.param, request)
    yield s
    await s.aclose()


# A user's tag, as the middleware makes them, and ids as ``challenge_id`` makes them (the
# user's shard first): on a cluster, a challenge and its user's keys share a slot.
USER = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
C1 = USER[:4] + ".c1"


def cid(name: str, user: str = USER) -> str:
    return user[:4] + "." + name


LOCKOUT = Bucket("fail:" + user_key(USER), 1000, 3600)


async def reserve(store: Store, cid: str, max_attempts: int) -> Challenge | None:
    """One attempt, under a lockout too high to matter here."""
    return (await store.reserve_attempt(cid, max_attempts, lockout=LOCKOUT, now=time.time())).challenge


def challenge(id_: str = C1, ttl: float = 60.0, user: str = USER, **kw: object) -> Challenge:
    now = time.time()
    fields: dict[str, object] = {"code_mac": "", **kw}
    return Challenge(id=id_, user_tag=user, phone="+12025550143", created_at=now, expires_at=now + ttl, **fields)  # type: ignore[arg-type]


async def test_create_fetch_and_delete(store: Store) -> None:
    await store.create(challenge())
    got = await store.get(C1)
    assert got is not None and got.user_tag == USER and got.phone == "+12025550143" and got.attempts == 0
    assert await store.get("nope") is None
    await store.delete(C1)
    assert await store.get(C1) is None


async def test_expiry_is_enforced_by_the_store(store: Store) -> None:
    await store.ping()  # connected (a cluster client reads the layout first): 0.3 s is for the TTL
    await store.create(challenge(ttl=0.3))
    assert await store.get(C1) is not None
    await asyncio.sleep(0.5)  # a real TTL: the store itself must drop it
    assert await store.get(C1) is None
    assert await reserve(store, C1, 5) is None


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
    seen = [await reserve(store, C1, 3) for _ in range(5)]
    assert [c.attempts if c else None for c in seen] == [1, 2, 3, None, None]


async def test_attempts_are_atomic_under_concurrency(store: Store) -> None:
    await store.create(challenge())
    results = await asyncio.gather(*(reserve(store, C1, 5) for _ in range(50)))
    assert sum(r is not None for r in results) == 5


async def test_consume_once_under_50_concurrent_callers(store: Store) -> None:
    await store.create(challenge())
    assert (
        await store.begin_call(
            C1, code_mac="m1", code="123456", call_nonce="n1", now=time.time(), cooldown=0, max_calls=3
        )
        == 0
    )
    results = await asyncio.gather(*(store.consume(C1, "m1") for _ in range(50)))
    assert results.count(True) == 1
    assert await store.get(C1) is None


async def test_consume_refuses_a_replaced_code(store: Store) -> None:
    await store.create(challenge())
    now = time.time()
    await store.begin_call(C1, code_mac="old", code="1", call_nonce="n1", now=now, cooldown=0, max_calls=3)
    await store.begin_call(C1, code_mac="new", code="2", call_nonce="n2", now=now + 31, cooldown=30, max_calls=3)
    assert await store.consume(C1, "old") is False
    assert await store.consume(C1, "") is False
    assert await store.consume(C1, "new") is True


async def test_call_slots_cooldown_and_limit(store: Store) -> None:
    await store.create(challenge())
    t = time.time()
    kw = dict(code_mac="m", code="c", cooldown=30, max_calls=3)
    assert await store.begin_call(C1, call_nonce="a", now=t, **kw) == 0  # type: ignore[arg-type]
    wait = await store.begin_call(C1, call_nonce="b", now=t + 10, **kw)  # type: ignore[arg-type]
    assert wait is not None and 19 < wait <= 20
    assert await store.begin_call(C1, call_nonce="b", now=t + 31, **kw) == 0  # type: ignore[arg-type]
    assert await store.begin_call(C1, call_nonce="c", now=t + 62, **kw) == 0  # type: ignore[arg-type]
    refused = await store.begin_call(C1, call_nonce="d", now=t + 93, **kw)  # type: ignore[arg-type]
    assert refused is not None and refused > 0
    got = await store.get(C1)
    assert got is not None and got.calls == 3 and got.call_nonce == "c" and got.call_status == "queued"
    assert await store.begin_call("gone", call_nonce="x", now=t, **kw) is None  # type: ignore[arg-type]


async def test_update_call_needs_the_current_nonce_and_binds_the_sid_once(store: Store) -> None:
    await store.create(challenge())
    await store.begin_call(C1, code_mac="m", code="123456", call_nonce="n1", now=time.time(), cooldown=0, max_calls=3)
    assert await store.update_call(C1, "wrong", status="ringing") is None
    assert await store.update_call(C1, "", status="ringing") is None
    first = await store.update_call(C1, "n1", call_sid="CA1", status="ringing")
    assert first is not None and first.call_sid == "CA1" and first.call_status == "ringing"
    second = await store.update_call(C1, "n1", call_sid="CA2", status="completed", drop_code=True)
    assert second is not None and second.call_sid == "CA1" and second.code == "" and second.code_mac == "m"


async def test_rollback_restores_the_previous_call(store: Store) -> None:
    await store.create(challenge())
    t = time.time()
    await store.begin_call(C1, code_mac="m1", code="111111", call_nonce="n1", now=t, cooldown=0, max_calls=3)
    before = await store.get(C1)
    assert before is not None
    await store.begin_call(C1, code_mac="m2", code="222222", call_nonce="n2", now=t + 40, cooldown=30, max_calls=3)
    await store.rollback_call(C1, "n2", before)
    after = await store.get(C1)
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
        await store.create(challenge(cid(f"c{n}")))
    with pytest.raises(StoreFullError):
        await store.create(challenge(cid("c3")))
    assert await store.get(cid("c0")) is not None  # live challenges are never evicted


@pytest.mark.redis
async def test_redis_store_fails_closed_with_store_error() -> None:
    from voice2fa_middleware import RedisStore

    dead = RedisStore("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(StoreError):
        await dead.get(C1)
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
    await store.hit(LOCKOUT.key, 3600, time.time())
    raw = aioredis.Redis.from_url(url)
    keys = sorted(k.decode() for k in await raw.keys("myapp:2fa:*"))
    # One server: the names earlier releases used (no hash tags), so counters survive upgrades.
    assert keys == ["myapp:2fa:ch:" + C1, "myapp:2fa:n:fail:" + USER, "myapp:2fa:u:" + USER]
    for key in keys:
        assert 0 < await raw.ttl(key) <= 3600
    await raw.aclose()
    await store.aclose()
    with pytest.raises(ValueError, match="key_prefix"):
        RedisStore(url, key_prefix="app:{x}:")


# -- start: the whole of starting a challenge, in one step ---------------------------------------


def budgets(user: str = USER, phone_limit: int = 10, user_limit: int = 10) -> tuple[str, list[Bucket], list[Bucket]]:
    """As the middleware builds them: the known-phone counter, then the budgets for a phone
    the user verified before and for a new one (shared budgets in slots of their own)."""
    mine = Bucket("calls:user:" + user_key(user), user_limit, 3600)
    client = Bucket("calls:client:" + own_slot("client1"), 1000, 3600)
    known = [Bucket("calls:all:known", 1000, 3600), Bucket(f"calls:known:{user_key(user)}:p1", 5, 3600), mine, client]
    new = [Bucket("calls:all", 1000, 3600), Bucket("calls:phone:" + own_slot("p1"), phone_limit, 3600), mine, client]
    return f"known:{user_key(user)}:p1", known, new


async def start(store: Store, ch: Challenge, **kw: object) -> Start:
    known_key, known, new = budgets(ch.user_tag, **kw)  # type: ignore[arg-type]
    lockout = Bucket("fail:" + user_key(ch.user_tag), 3, 3600)
    return await store.start(ch, lockout=lockout, known_key=known_key, known=known, new=new, now=time.time())


async def test_start_creates_then_returns_the_live_challenge_for_the_same_binding(store: Store) -> None:
    first = await start(store, challenge(cid("one"), binding="b1", calls=1, code_mac="m1"))
    assert first.created and first.challenge is not None and first.challenge.id == cid("one")
    again = await start(store, challenge(cid("two"), binding="b1"))
    assert not again.created and again.challenge is not None and again.challenge.id == cid("one")
    assert again.challenge.calls == 1 and again.challenge.code_mac == "m1"
    assert await store.get(cid("two")) is None
    now = time.time()
    _k, _known, new = budgets()
    assert [(await store.peek(b.key, now))[0] for b in new] == [1, 1, 1, 1]  # charged once
    live = await store.live_challenge(USER)
    assert live is not None and live.id == cid("one")


async def test_start_replaces_a_challenge_made_for_another_binding(store: Store) -> None:
    await start(store, challenge(cid("old"), binding="old-phone"))
    fresh = await start(store, challenge(cid("new"), binding="new-phone"))
    assert fresh.created and await store.get(cid("old")) is None and await store.get(cid("new")) is not None


async def test_start_refuses_a_locked_out_user_and_saves_nothing(store: Store) -> None:
    now = time.time()
    for _ in range(3):
        await store.hit("fail:" + user_key(USER), 3600, now)
    refused = await start(store, challenge(cid("x"), binding="b"))
    assert refused.challenge is None and not refused.created and 3500 < refused.locked_for <= 3600
    assert await store.get(cid("x")) is None and await store.live_challenge(USER) is None
    _k, _known, new = budgets()
    assert [(await store.peek(b.key, now))[0] for b in new] == [0, 0, 0, 0]


async def test_start_charges_the_known_or_the_new_budgets_all_or_nothing(store: Store) -> None:
    now = time.time()
    known_key, known, new = budgets(phone_limit=1)
    assert (await start(store, challenge(cid("a"), binding="a"), phone_limit=1)).created
    await store.delete(cid("a"))
    refused = await start(store, challenge(cid("b"), binding="b"), phone_limit=1)
    assert refused.challenge is None and 3500 < refused.wait <= 3600
    assert await store.get(cid("b")) is None and await store.live_challenge(USER) is None
    # Nothing was counted on refusal, on any node.
    assert [(await store.peek(b.key, now))[0] for b in new] == [1, 1, 1, 1]
    await store.hit(known_key, 3600, now)  # the user verified this phone: their own budgets
    assert (await start(store, challenge(cid("c"), binding="c"), phone_limit=1)).created
    assert [(await store.peek(b.key, now))[0] for b in known] == [1, 1, 2, 2]
    assert (await store.peek(new[1].key, now))[0] == 1


async def test_start_under_concurrency_one_challenge_per_user(store: Store) -> None:
    results = await asyncio.gather(*(start(store, challenge(cid(f"c{i}"), binding="b")) for i in range(20)))
    assert sum(r.created for r in results) == 1
    ids = {r.challenge.id for r in results if r.challenge is not None}
    assert len(ids) == 1
    _k, _known, new = budgets()
    assert (await store.peek(new[0].key, time.time()))[0] == 1


async def test_start_under_concurrency_a_shared_budget_is_never_overspent(store: Store) -> None:
    users = [f"{i:04x}" + "0" * 28 for i in range(0, 40 * 977, 977)]  # many shards (slots)
    results = await asyncio.gather(
        *(start(store, challenge(cid("c", u), user=u, binding="b"), phone_limit=7) for u in users)
    )
    assert sum(r.created for r in results) == 7
    _k, _known, new = budgets(phone_limit=7)
    now = time.time()
    # Exactly the seven calls are counted: refusals on another node gave their hits back.
    assert (await store.peek(new[1].key, now))[0] == 7
    assert (await store.peek(new[0].key, now))[0] == 7
    assert sum([await store.live_challenge(u) is not None for u in users]) == 7


@pytest.mark.redis
async def test_cluster_keys_of_one_user_share_a_slot(redis_cluster: object) -> None:
    from redis.crc import key_slot

    from voice2fa_middleware import RedisStore

    from .conftest import cluster_url

    store = RedisStore(cluster_url(redis_cluster.url), key_prefix="slots:")  # type: ignore[attr-defined]
    await start(store, challenge(C1, binding="b"))
    await store.hit(LOCKOUT.key, 3600, time.time())
    keys = [store._ck(C1), store._uk(USER), store._nk(LOCKOUT.key), store._nk(budgets()[2][2].key)]
    # The user's shard is the hash tag of each of the user's keys: one slot, one node.
    assert keys[0] == "slots:ch:{a1b2}c1" and keys[1] == "slots:u:{a1b2}" + USER[4:]
    assert len({key_slot(k.encode()) for k in keys}) == 1
    shared = [store._nk(b.key) for b in budgets()[2] if "{a1b2}" not in b.key]
    assert len({key_slot(k.encode()) for k in shared}) == len(shared)  # the shared ones spread out
    await store.aclose()


@pytest.mark.redis
async def test_cluster_undoes_a_start_when_a_shared_budget_fails(redis_cluster: object) -> None:
    """The user's script saved the challenge; then a node failed taking a shared budget: the
    challenge (with its code) is deleted and the user's budgets given back, then it fails."""
    from voice2fa_middleware import RedisStore

    from .conftest import cluster_url

    store = RedisStore(cluster_url(redis_cluster.url), key_prefix=f"undo{time.time_ns()}:")  # type: ignore[attr-defined]

    async def node_down(**_kw: object) -> object:
        raise ConnectionError("node down")

    store._lua.take = node_down
    with pytest.raises(StoreError):
        await start(store, challenge(C1, binding="b"))
    assert await store.get(C1) is None and await store.live_challenge(USER) is None
    _k, _known, new = budgets()
    assert (await store.peek(new[2].key, time.time()))[0] == 0  # the user's budget, given back
    await store.aclose()

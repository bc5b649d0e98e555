"""``RedisStore``: challenges, limits and lockouts shared by every worker and host.

Each operation that must be atomic is one Lua script run by Redis (``_redis_scripts``), and
every key carries a TTL set in Redis itself, so nothing outlives its lifetime when a worker
dies. On a Redis Cluster every script touches keys of one slot only: a user's keys share a
hash tag; the budgets that several users share (per phone, per client, deployment-wide) are
taken on their own nodes, once per call, and given back if another node refused.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._core.crypto import compact_json
from .._errors import MissingExtraError, StoreError
from .._telephony.status import RANK
from .base import ROLLBACK_FIELDS, Bucket, Challenge, Reservation, Start, user_key
from .redis_batch import Batcher, Scripts, pairs, text
from .redis_connect import Connection, connect

logger = logging.getLogger("voice2fa")

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster


def _key_slot(key: bytes) -> int:
    from redis.crc import key_slot

    return key_slot(key)


def _pool_exhausted(exc: BaseException) -> bool:
    """A connection pool with no free connection (redis-py's non-blocking pools raise
    ``MaxConnectionsError``, its blocking pool "No connection available." after its wait)."""
    return type(exc).__name__ in ("MaxConnectionsError", "MaxConnectionsExceededError") or (
        "No connection available" in str(exc) or "Too many connections" in str(exc)
    )


# Each call status's rank, as UPDATE_CALL reads it (encoded once).
_RANKS = compact_json(RANK)


def _connection_error(exc: BaseException | None) -> bool:
    """redis-py's ``ConnectionError`` (a broken or refused connection), not its timeouts."""
    return exc is not None and type(exc).__name__ == "ConnectionError" and not _pool_exhausted(exc)


def _limits(buckets: Sequence[Bucket]) -> list[int]:
    return [n for b in buckets for n in (b.limit, b.window * 1000)]


class RedisStore:
    """A store on Redis (or Valkey) through ``redis.asyncio``, for several workers or hosts.

    ``url`` takes every form redis-py knows (``redis://[[user]:password@]host:6379/0``,
    ``rediss://`` for TLS, ``unix:///path/redis.sock``) and two of ours:
    ``redis+sentinel://host:26379[,host:26379...]/mymaster[/db]`` for the master that
    Sentinel names (found again after a failover) and ``redis+cluster://host:6379[,...]``
    for a Redis Cluster (``rediss+`` for TLS). Or pass ``client``: a ``redis.asyncio.Redis``
    (for instance ``Sentinel(...).master_for(...)``) or ``redis.asyncio.cluster.RedisCluster``.

    Keys start with ``key_prefix``. Every call has a timeout; any failure raises
    ``StoreError`` so requests fail closed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        key_prefix: str = "voice2fa:",
        timeout: float = 2.0,
        max_connections: int = 100,
    ) -> None:
        try:
            from redis.asyncio.cluster import RedisCluster as _Cluster
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingExtraError("RedisStore", "redis") from exc
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError("key_prefix must not contain '{' or '}' (they choose Redis Cluster slots)")
        if client is None:
            if not url:
                raise ValueError("RedisStore needs a url or a client")
            self._conn = connect(url, timeout=timeout, max_connections=max_connections)
        else:
            self._conn = Connection(client, cluster=isinstance(client, _Cluster))
        redis = self._conn.client
        self._redis = redis
        self.cluster = self._conn.cluster  # a Redis Cluster
        # asyncio's cheaper timeout may bound our calls, but not on a cluster (see _undo_start).
        self.native_deadline = not self.cluster
        self.shared = True  # every process that names this server sees the same data
        self.deadline_free = False
        self._prefix = key_prefix
        self._timeout = timeout
        self._max_connections = max_connections
        # redis-py's cluster client, when its first commands run side by side before it has
        # read the cluster's layout, fails some of them: it reads the layout once, first.
        self._cold = self.cluster
        self._warming = asyncio.Lock()
        # One server or Sentinel: the scripts of concurrent requests go out together (_redis_batch).
        self._batch = None if self.cluster else Batcher(redis)
        self._lua = Scripts(self._batch.register_script if self._batch else redis.register_script)

    # On a cluster, keys carry hash tags: ids made by ``challenge_id()`` lead with their
    # user's shard, the same hash tag as the user's keys. On one server the braces are left
    # out: the keys keep their earlier names (lockouts, budgets, known phones survive upgrades).
    def _ck(self, challenge_id: str) -> str:
        shard, dot, rest = challenge_id.partition(".")
        if self.cluster and dot:
            return f"{self._prefix}ch:{{{shard}}}{rest}"
        return f"{self._prefix}ch:{challenge_id}"

    def _nk(self, key: str) -> str:
        return f"{self._prefix}n:{key if self.cluster else key.replace('{', '').replace('}', '')}"

    def _uk(self, user_tag: str) -> str:
        return f"{self._prefix}u:{user_key(user_tag) if self.cluster else user_tag}"

    @staticmethod
    def _slot(key: str) -> int:
        return _key_slot(key.encode())

    async def _ready(self) -> None:
        async with self._warming:
            if self._cold:
                await self._redis.initialize()
                self._cold = False

    async def _run(self, coro: Any) -> Any:
        try:
            if self._cold:
                await self._ready()
            return await coro
        except StoreError:
            raise
        except Exception as exc:  # redis errors, timeouts, closed sockets: fail closed
            if _pool_exhausted(exc):
                raise StoreError(
                    f"redis: every connection of this worker's pool is in use (max_connections="
                    f"{self._max_connections}); Redis itself may be fine: raise redis_max_connections"
                ) from exc
            raise StoreError(f"redis: {type(exc).__name__}") from exc
        finally:
            if inspect.iscoroutine(coro):
                coro.close()  # never started when the cluster could not be reached

    def _user_keys(self, challenge: Challenge) -> tuple[str, str]:
        key, pointer = self._ck(challenge.id), self._uk(challenge.user_tag)
        if self.cluster and self._slot(key) != self._slot(pointer):
            raise ValueError("on a Redis Cluster, challenge ids must come from challenge_id(user_tag)")
        return key, pointer

    async def create(self, challenge: Challenge) -> None:
        key, pointer = self._user_keys(challenge)
        fields = [x for kv in challenge.to_fields().items() for x in kv]
        await self._run(self._lua.create(keys=[key, pointer], args=[int(challenge.expires_at * 1000), *fields]))

    async def _run_twice(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run a command that may safely run twice (a read, or a write whose second run
        changes nothing): once more on a fresh connection when the first one's connection
        broke (a pooled connection made stale by a Redis restart, S28). Others never retry:
        a script whose answer was lost must not run twice."""
        try:
            return await self._run(make())
        except StoreError as exc:
            if not isinstance(exc.__cause__, (ConnectionError, OSError)) and not _connection_error(exc.__cause__):
                raise
            logger.info("voice2fa: a Redis connection broke (%s); trying once more on a fresh one", exc)
            return await self._run(make())

    async def live_challenge(self, user_tag: str) -> Challenge | None:
        flat = await self._run_twice(lambda: self._lua.live(keys=[self._uk(user_tag)]))
        return Challenge.from_fields(pairs(flat)) if flat else None

    async def get(self, challenge_id: str) -> Challenge | None:
        fields = await self._run_twice(lambda: self._redis.hgetall(self._ck(challenge_id)))
        if not fields:
            return None
        return Challenge.from_fields({text(k): text(v) for k, v in fields.items()})

    async def start(
        self,
        challenge: Challenge,
        *,
        lockout: Bucket,
        known_key: str,
        known: Sequence[Bucket],
        new: Sequence[Bucket],
        now: float,
    ) -> Start:
        key, pointer = self._user_keys(challenge)
        home = self._slot(pointer) if self.cluster else None
        # On one server every bucket is local and one script does it all. On a cluster the
        # script takes the user's own buckets; the shared ones follow, each on its own node.
        local_known = [b for b in known if home is None or self._slot(self._nk(b.key)) == home]
        local_new = [b for b in new if home is None or self._slot(self._nk(b.key)) == home]
        answer = await self._run(
            self._lua.start(
                keys=[
                    pointer,
                    self._nk(lockout.key),
                    self._nk(known_key),
                    key,
                    *(self._nk(b.key) for b in [*local_known, *local_new]),
                ],
                args=[
                    challenge.binding,
                    lockout.limit,
                    lockout.window * 1000,
                    int(challenge.expires_at * 1000),
                    len(local_known),
                    len(local_new),
                    compact_json(_limits([*local_known, *local_new])),
                    compact_json(challenge.to_fields()),
                ],
            )
        )
        status = int(answer[0])
        if status == 1:
            return Start(Challenge.from_fields(pairs(answer[1])), created=False)
        if status == 2:
            return Start(None, created=False, locked_for=int(answer[1]) / 1000.0)
        if status == 3:
            return Start(None, created=False, wait=int(answer[1]) / 1000.0)
        chosen, local = (known, local_known) if int(answer[1]) else (new, local_new)
        charged = tuple(chosen)
        shared = [b for b in chosen if b not in local] if self.cluster else []
        if shared:
            try:
                wait = await self._take_spread(shared)
            except BaseException:
                # A node failed or the request was cancelled: the challenge saved above must
                # not outlive this (its code, a call never placed): undo it, then fail closed.
                await self._undo_start(pointer, key, local)
                raise
            if wait:
                await self._undo_start(pointer, key, local)
                return Start(None, created=False, wait=wait)
        return Start(challenge, created=True, charged=charged)

    async def _undo_start(self, pointer: str, key: str, local: Sequence[Bucket]) -> None:
        """Delete a challenge just started and give its user's budgets back: best effort,
        shielded from cancellation, within the store's timeout."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
            try:
                await self._lua.abandon(keys=[pointer, key, *(self._nk(b.key) for b in local)])
            except Exception:  # the challenge then expires with its code_ttl
                logger.warning("voice2fa: could not undo a challenge after a cluster error")

    async def _take_spread(self, buckets: Sequence[Bucket]) -> float:
        """``take`` on a cluster: each slot's buckets in one script, the slots side by side;
        when one refuses, the others give their hit back. A concurrent caller may be refused
        by a hit that is then given back: the error is always on the side of refusing."""
        if self._cold:
            await self._run(self._ready())
        groups: dict[int, list[Bucket]] = {}
        for b in buckets:
            groups.setdefault(self._slot(self._nk(b.key)), []).append(b)
        parts = list(groups.values())
        waits = await asyncio.gather(
            *(self._lua.take(keys=[self._nk(b.key) for b in g], args=_limits(g)) for g in parts), return_exceptions=True
        )
        failed = next((w for w in waits if isinstance(w, BaseException)), None)
        wait_ms = 0 if failed else max(int(w) for w in waits)  # type: ignore[arg-type]
        if failed or wait_ms:  # every group that took its hit gives it back
            taken = [
                self._nk(b.key)
                for g, w in zip(parts, waits, strict=True)
                if not isinstance(w, BaseException) and not int(w)
                for b in g
            ]
            await asyncio.gather(*(self._lua.untake(keys=[k]) for k in taken), return_exceptions=True)
        if failed is not None:
            raise StoreError(f"redis: {type(failed).__name__}") from failed
        return wait_ms / 1000.0

    async def reserve_attempt(
        self, challenge_id: str, max_attempts: int, *, lockout: Bucket, now: float
    ) -> Reservation:
        counted, failures, locked_ms, *rest = await self._run(
            self._lua.reserve(
                keys=[self._ck(challenge_id), self._nk(lockout.key)],
                args=[max_attempts, lockout.limit, lockout.window * 1000],
            )
        )
        challenge = Challenge.from_fields(pairs(rest[0])) if int(counted) else None
        return Reservation(challenge, int(failures), int(locked_ms) / 1000.0)

    async def consume(self, challenge_id: str, code_mac: str) -> bool:
        return bool(await self._run(self._lua.consume(keys=[self._ck(challenge_id)], args=[code_mac])))

    async def rollback_call(self, challenge_id: str, call_nonce: str, previous: Challenge) -> None:
        fields = previous.to_fields()
        args = [call_nonce]
        for name in ROLLBACK_FIELDS:
            args += [name, fields[name]]
        await self._run(self._lua.rollback(keys=[self._ck(challenge_id)], args=args))

    async def begin_call(
        self,
        challenge_id: str,
        *,
        code_mac: str,
        code: str,
        call_nonce: str,
        now: float,
        cooldown: float,
        max_calls: int,
    ) -> float | None:
        raw = await self._run(
            self._lua.begin_call(
                keys=[self._ck(challenge_id)],
                args=[code_mac, code, call_nonce, repr(now), repr(float(cooldown)), max_calls],
            )
        )
        value = float(raw.decode() if isinstance(raw, bytes) else raw)
        return None if value < 0 else value

    async def update_call(
        self,
        challenge_id: str,
        call_nonce: str,
        *,
        call_sid: str | None = None,
        status: str | None = None,
        drop_code: bool = False,
    ) -> Challenge | None:
        # Runs twice safely: the sid is kept only when none is, the status only moves forward.
        flat = await self._run_twice(
            lambda: self._lua.update_call(
                keys=[self._ck(challenge_id)],
                args=[call_nonce, call_sid or "", status or "", int(drop_code), _RANKS],
            )
        )
        return Challenge.from_fields(pairs(flat)) if flat else None

    async def delete(self, challenge_id: str) -> None:
        await self._run(self._redis.delete(self._ck(challenge_id)))

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        if not buckets:
            return 0.0
        if self.cluster and len({self._slot(self._nk(b.key)) for b in buckets}) > 1:
            return await self._take_spread(buckets)
        wait_ms = await self._run(self._lua.take(keys=[self._nk(b.key) for b in buckets], args=_limits(buckets)))
        return int(wait_ms) / 1000.0

    async def hit(self, key: str, window: int, now: float, *, renew: bool = False) -> tuple[int, float]:
        count, ttl_ms = await self._run(self._lua.hit(keys=[self._nk(key)], args=[window * 1000, int(renew)]))
        return int(count), max(int(ttl_ms), 0) / 1000.0

    async def refund(self, buckets: Sequence[Bucket], now: float) -> None:
        if not buckets:
            return
        keys = [self._nk(b.key) for b in buckets]
        if self.cluster and len({self._slot(k) for k in keys}) > 1:
            groups: dict[int, list[str]] = {}
            for k in keys:
                groups.setdefault(self._slot(k), []).append(k)
            await self._run(asyncio.gather(*(self._lua.untake(keys=g) for g in groups.values())))
            return
        await self._run(self._lua.untake(keys=keys))

    async def reserve_slot(self, key: str, interval: float, now: float, max_wait: float) -> float:
        # Not retried: a script whose answer was lost may have taken a slot (one slot lost: a
        # later call waits one interval more, never two calls in one slot).
        wait_ms = await self._run(
            self._lua.reserve_slot(
                keys=[self._nk(key)],
                args=[int(now * 1000), max(1, int(interval * 1000)), int(max_wait * 1000)],
            )
        )
        return int(wait_ms) / 1000.0

    async def peek(self, key: str, now: float) -> tuple[int, float]:
        count, ttl_ms = await self._run_twice(lambda: self._lua.peek(keys=[self._nk(key)]))
        return int(count), max(int(ttl_ms), 0) / 1000.0

    async def clear(self, key: str) -> None:
        await self._run(self._redis.delete(self._nk(key)))

    async def ping(self) -> None:
        await self._run(self._redis.ping())

    async def aclose(self) -> None:
        if self._batch is not None:
            await self._batch.aclose()
        await self._conn.aclose()

"""``RedisStore``: challenges, limits and lockouts shared by every worker and host.

Each operation that must be atomic is one Lua script run by Redis, and every key carries a
TTL set in Redis itself, so nothing outlives its lifetime when a worker dies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import MissingExtraError, StoreError
from ._store import ROLLBACK_FIELDS, Bucket, Challenge, Reservation

if TYPE_CHECKING:
    from redis.asyncio import Redis

# KEYS[1] challenge hash, KEYS[2] the user's failure counter; ARGV: max attempts, lockout
# limit, window (ms). Counts one attempt and one failure, or refuses: {counted, failures,
# ms locked, fields}.
_RESERVE = """
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures >= tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  return {0, failures, ttl}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, failures, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[1]) then return {0, failures, 0} end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
failures = redis.call('INCR', KEYS[2])
if failures == 1 or redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return {1, failures, 0, redis.call('HGETALL', KEYS[1])}
"""

# KEYS[1] challenge; ARGV: code_mac, code, nonce, now, cooldown, max_calls.
_BEGIN_CALL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return '-1' end
local calls = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0')
local now = tonumber(ARGV[4])
if calls >= tonumber(ARGV[6]) then
  local left = tonumber(redis.call('HGET', KEYS[1], 'expires_at')) - now
  if left < 1 then left = 1 end
  return tostring(left)
end
local wait = tonumber(redis.call('HGET', KEYS[1], 'last_call_at') or '0') + tonumber(ARGV[5]) - now
if calls > 0 and wait > 0 then return tostring(wait) end
redis.call('HSET', KEYS[1], 'code_mac', ARGV[1], 'code', ARGV[2], 'call_nonce', ARGV[3],
  'calls', calls + 1, 'last_call_at', ARGV[4], 'call_sid', '', 'call_status', 'queued')
return '0'
"""

# KEYS[1] challenge; ARGV: nonce, call_sid, status, drop_code.
_UPDATE_CALL = """
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'call_nonce') ~= ARGV[1] then return false end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[1], 'call_sid') or '') == '' then
  redis.call('HSET', KEYS[1], 'call_sid', ARGV[2])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'call_status', ARGV[3]) end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'code', '') end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] challenge; ARGV[1] the code MAC it must still hold. Compare-and-delete.
_CONSUME = """
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'code_mac') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# KEYS[1] challenge; ARGV[1] nonce, then field/value pairs to put back.
_ROLLBACK = """
if redis.call('HGET', KEYS[1], 'call_nonce') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: counters; ARGV: limit, window (ms) pairs in KEYS order. All or nothing.
_TAKE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
    if ttl < 0 then wait = math.max(wait, tonumber(ARGV[2 * i])) end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
end
return 0
"""

# KEYS[1] counter; ARGV[1] window (ms). Returns {count, ms left}.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisStore:
    """A store on Redis (or Valkey) through ``redis.asyncio``, for several workers or hosts.

    ``url`` takes every form redis-py knows: ``redis://[:password@]host:6379/0``,
    ``rediss://`` for TLS, ``unix:///path/redis.sock``. Keys start with ``key_prefix``.
    Every call has a timeout; any failure raises ``StoreError`` so requests fail closed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        key_prefix: str = "voice2fa:",
        timeout: float = 2.0,
        max_connections: int = 100,
    ) -> None:
        try:
            from redis.asyncio import Redis as _Redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingExtraError("RedisStore", "redis") from exc
        if client is None:
            if not url:
                raise ValueError("RedisStore needs a url or a client")
            client = _Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                max_connections=max_connections,
                health_check_interval=30,
            )
        self._redis: Redis = client
        self._prefix = key_prefix
        self._reserve = client.register_script(_RESERVE)
        self._begin_call = client.register_script(_BEGIN_CALL)
        self._update_call = client.register_script(_UPDATE_CALL)
        self._take = client.register_script(_TAKE)
        self._consume = client.register_script(_CONSUME)
        self._rollback = client.register_script(_ROLLBACK)
        self._hit = client.register_script(_HIT)

    def _ck(self, challenge_id: str) -> str:
        return f"{self._prefix}ch:{challenge_id}"

    def _nk(self, key: str) -> str:
        return f"{self._prefix}n:{key}"

    async def _run(self, coro: Any) -> Any:
        try:
            return await coro
        except StoreError:
            raise
        except Exception as exc:  # redis errors, timeouts, closed sockets: fail closed
            raise StoreError(f"redis: {type(exc).__name__}") from exc

    def _uk(self, user_tag: str) -> str:
        return f"{self._prefix}u:{user_tag}"

    async def create(self, challenge: Challenge) -> None:
        key = self._ck(challenge.id)
        expires_ms = int(challenge.expires_at * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=dict(challenge.to_fields()))  # type: ignore[arg-type]
        pipe.pexpireat(key, expires_ms)
        pipe.set(self._uk(challenge.user_tag), challenge.id, pxat=expires_ms)
        await self._run(pipe.execute())

    async def live_challenge(self, user_tag: str) -> Challenge | None:
        newest = await self._run(self._redis.get(self._uk(user_tag)))
        if newest is None:
            return None
        return await self.get(newest.decode() if isinstance(newest, bytes) else str(newest))

    async def get(self, challenge_id: str) -> Challenge | None:
        fields = await self._run(self._redis.hgetall(self._ck(challenge_id)))
        if not fields:
            return None
        return Challenge.from_fields(_pairs([x for kv in fields.items() for x in kv]))

    async def reserve_attempt(
        self, challenge_id: str, max_attempts: int, *, lockout: Bucket, now: float
    ) -> Reservation:
        counted, failures, locked_ms, *rest = await self._run(
            self._reserve(
                keys=[self._ck(challenge_id), self._nk(lockout.key)],
                args=[max_attempts, lockout.limit, lockout.window * 1000],
            )
        )
        challenge = Challenge.from_fields(_pairs(rest[0])) if int(counted) else None
        return Reservation(challenge, int(failures), int(locked_ms) / 1000.0)

    async def consume(self, challenge_id: str, code_mac: str) -> bool:
        return bool(await self._run(self._consume(keys=[self._ck(challenge_id)], args=[code_mac])))

    async def rollback_call(self, challenge_id: str, call_nonce: str, previous: Challenge) -> None:
        fields = previous.to_fields()
        args = [call_nonce]
        for name in ROLLBACK_FIELDS:
            args += [name, fields[name]]
        await self._run(self._rollback(keys=[self._ck(challenge_id)], args=args))

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
            self._begin_call(
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
        flat = await self._run(
            self._update_call(
                keys=[self._ck(challenge_id)],
                args=[call_nonce, call_sid or "", status or "", int(drop_code)],
            )
        )
        return Challenge.from_fields(_pairs(flat)) if flat else None

    async def delete(self, challenge_id: str) -> None:
        await self._run(self._redis.delete(self._ck(challenge_id)))

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        if not buckets:
            return 0.0
        args: list[int] = []
        for b in buckets:
            args += [b.limit, b.window * 1000]
        wait_ms = await self._run(self._take(keys=[self._nk(b.key) for b in buckets], args=args))
        return int(wait_ms) / 1000.0

    async def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
        count, ttl_ms = await self._run(self._hit(keys=[self._nk(key)], args=[window * 1000]))
        return int(count), max(int(ttl_ms), 0) / 1000.0

    async def peek(self, key: str, now: float) -> tuple[int, float]:
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(self._nk(key))
        pipe.pttl(self._nk(key))
        raw, ttl_ms = await self._run(pipe.execute())
        if raw is None:
            return 0, 0.0
        return int(raw), max(int(ttl_ms), 0) / 1000.0

    async def clear(self, key: str) -> None:
        await self._run(self._redis.delete(self._nk(key)))

    async def ping(self) -> None:
        await self._run(self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()

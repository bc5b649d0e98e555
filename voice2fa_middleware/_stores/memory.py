"""``MemoryStore``: the embedded default store, for one process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from cachetools import TLRUCache

from .._errors import StoreFullError
from .._telephony.status import RANK
from .base import ROLLBACK_FIELDS, Bucket, Challenge, Clock, Reservation, Start


class MemoryStore:
    """The embedded default: one process, bounded, on cachetools ``TLRUCache``.

    Each entry expires at its own time. When ``max_challenges`` live challenges are held,
    new ones are refused (``StoreFullError``, a 503) rather than evicting live ones: an
    attacker who floods the store then cannot silently cancel other users' challenges, and
    the call limits per client address bound how fast anyone can fill it. Counters are
    bounded too (four per challenge); the least recently used expire first when full.

    Every method runs without awaiting inside, so each is atomic on the event loop.
    """

    shared = False  # one process
    deadline_free = True  # no method awaits: atomic on the event loop, and never late

    def __init__(self, *, max_challenges: int = 100_000, clock: Clock = time.time) -> None:
        self._clock = clock
        self._max = max_challenges
        self._challenges: TLRUCache[str, Challenge] = TLRUCache(
            maxsize=max_challenges + 1, ttu=lambda _k, v, _now: v.expires_at, timer=clock
        )
        # user tag -> (newest challenge id, its expiry)
        self._by_user: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=max_challenges + 1, ttu=lambda _k, v, _now: v[1], timer=clock
        )
        self._counters: TLRUCache[str, tuple[int, float]] = TLRUCache(
            maxsize=max(4 * max_challenges, 1024), ttu=lambda _k, v, _now: v[1], timer=clock
        )
        # key -> the time its next call slot is free (pacing: one key per deployment, few ever)
        self._slots: TLRUCache[str, float] = TLRUCache(maxsize=1024, ttu=lambda _k, v, _now: v + 1.0, timer=clock)

    def __len__(self) -> int:
        self._challenges.expire()
        return len(self._challenges)

    async def create(self, challenge: Challenge) -> None:
        self._challenges.expire()
        if len(self._challenges) >= self._max:
            raise StoreFullError("the in-memory store is full")
        self._challenges[challenge.id] = challenge
        self._by_user[challenge.user_tag] = (challenge.id, challenge.expires_at)

    async def get(self, challenge_id: str) -> Challenge | None:
        return self._challenges.get(challenge_id)

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
        live = await self.live_challenge(challenge.user_tag)
        if live is not None:
            if live.binding == challenge.binding:
                return Start(live, created=False)
            del self._challenges[live.id]
        failures, reset_at = self._counter(lockout.key, now)
        if failures >= lockout.limit:
            return Start(None, created=False, locked_for=max(reset_at - now, 1.0))
        self._challenges.expire()
        if len(self._challenges) >= self._max:
            raise StoreFullError("the in-memory store is full")
        charged = tuple(known if self._counter(known_key, now)[0] else new)
        wait = await self.take(charged, now)
        if wait:
            return Start(None, created=False, wait=wait)
        await self.create(challenge)
        return Start(challenge, created=True, charged=charged)

    async def live_challenge(self, user_tag: str) -> Challenge | None:
        newest = self._by_user.get(user_tag)
        return self._challenges.get(newest[0]) if newest is not None else None

    async def reserve_attempt(
        self, challenge_id: str, max_attempts: int, *, lockout: Bucket, now: float
    ) -> Reservation:
        failures, reset_at = self._counter(lockout.key, now)
        if failures >= lockout.limit:
            return Reservation(None, failures, max(reset_at - now, 1.0))
        current = self._challenges.get(challenge_id)
        if current is None or current.attempts >= max_attempts:
            return Reservation(None, failures, 0.0)
        updated = dataclasses.replace(current, attempts=current.attempts + 1)
        self._challenges[challenge_id] = updated
        self._counters[lockout.key] = (failures + 1, reset_at if failures else now + lockout.window)
        return Reservation(updated, failures + 1, 0.0)

    async def consume(self, challenge_id: str, code_mac: str) -> bool:
        current = self._challenges.get(challenge_id)
        if current is None or not code_mac or current.code_mac != code_mac:
            return False
        del self._challenges[challenge_id]
        return True

    async def rollback_call(self, challenge_id: str, call_nonce: str, previous: Challenge) -> None:
        current = self._challenges.get(challenge_id)
        if current is None or current.call_nonce != call_nonce:
            return
        self._challenges[challenge_id] = dataclasses.replace(
            current, **{name: getattr(previous, name) for name in ROLLBACK_FIELDS}
        )

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
        current = self._challenges.get(challenge_id)
        if current is None:
            return None
        if current.calls >= max_calls:
            return max(current.expires_at - now, 1.0)
        wait = current.last_call_at + cooldown - now
        if current.calls and wait > 0:
            return wait
        self._challenges[challenge_id] = dataclasses.replace(
            current,
            code_mac=code_mac,
            code=code,
            call_nonce=call_nonce,
            calls=current.calls + 1,
            last_call_at=now,
            call_sid="",
            call_status="queued",
        )
        return 0.0

    async def update_call(
        self,
        challenge_id: str,
        call_nonce: str,
        *,
        call_sid: str | None = None,
        status: str | None = None,
        drop_code: bool = False,
    ) -> Challenge | None:
        current = self._challenges.get(challenge_id)
        if current is None or not call_nonce or current.call_nonce != call_nonce:
            return None
        changes: dict[str, object] = {}
        if call_sid and not current.call_sid:
            changes["call_sid"] = call_sid
        if status and RANK.get(status, 0) >= RANK.get(current.call_status, 0):  # only forward
            changes["call_status"] = status
        if drop_code:
            changes["code"] = ""
        updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
        self._challenges[challenge_id] = updated
        return updated

    async def delete(self, challenge_id: str) -> None:
        self._challenges.pop(challenge_id, None)

    def _counter(self, key: str, now: float) -> tuple[int, float]:
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now:
            return 0, 0.0
        return entry

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        wait = 0.0
        for b in buckets:
            count, reset_at = self._counter(b.key, now)
            if count >= b.limit:
                wait = max(wait, reset_at - now if count else float(b.window))
        if wait > 0:
            return wait
        for b in buckets:
            count, reset_at = self._counter(b.key, now)
            self._counters[b.key] = (count + 1, reset_at if count else now + b.window)
        return 0.0

    async def hit(self, key: str, window: int, now: float, *, renew: bool = False) -> tuple[int, float]:
        count, reset_at = self._counter(key, now)
        entry = (count + 1, reset_at if count and not renew else now + window)
        self._counters[key] = entry
        return entry[0], entry[1] - now

    async def refund(self, buckets: Sequence[Bucket], now: float) -> None:
        for b in buckets:
            count, reset_at = self._counter(b.key, now)
            if count > 0:
                self._counters[b.key] = (count - 1, reset_at)

    async def reserve_slot(self, key: str, interval: float, now: float, max_wait: float) -> float:
        entry = self._slots.get(key)
        slot = max(entry if entry is not None else 0.0, now)
        wait = slot - now
        if wait > max_wait:
            return wait
        self._slots[key] = slot + interval
        return wait

    async def peek(self, key: str, now: float) -> tuple[int, float]:
        count, reset_at = self._counter(key, now)
        return count, max(reset_at - now, 0.0)

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

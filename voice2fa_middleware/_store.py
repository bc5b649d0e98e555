"""Where challenges and counters live: the protocol, and the in-memory default.

The core decides (codes, limits, expiry); a store only stores, but every operation that
must be atomic is one call, so that a store shared by several workers (``RedisStore``)
cannot be raced: counting an attempt, consuming a challenge, granting a call slot and
taking from several rate-limit buckets at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from cachetools import TLRUCache

from ._errors import StoreFullError

Clock = Callable[[], float]


@dataclass(frozen=True)
class Challenge:
    """One pending second factor. ``code`` (plain) lives only while its call does (S2)."""

    id: str
    user_tag: str
    phone: str
    code_mac: str = field(repr=False)
    expires_at: float
    created_at: float
    code: str = field(default="", repr=False)
    attempts: int = 0
    calls: int = 0
    last_call_at: float = 0.0
    call_nonce: str = ""
    call_sid: str = ""
    call_status: str = ""
    language: str = "en"
    binding: str = ""
    """A keyed tag of the identity (user, phone called, version) the challenge was made for."""

    def to_fields(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Challenge:
        return cls(
            id=fields["id"],
            user_tag=fields["user_tag"],
            phone=fields["phone"],
            code_mac=fields["code_mac"],
            expires_at=float(fields["expires_at"]),
            created_at=float(fields["created_at"]),
            code=fields.get("code", ""),
            attempts=int(fields.get("attempts", 0)),
            calls=int(fields.get("calls", 0)),
            last_call_at=float(fields.get("last_call_at", 0.0)),
            call_nonce=fields.get("call_nonce", ""),
            call_sid=fields.get("call_sid", ""),
            call_status=fields.get("call_status", ""),
            language=fields.get("language", "en"),
            binding=fields.get("binding", ""),
        )


ROLLBACK_FIELDS = ("code_mac", "code", "call_nonce", "calls", "last_call_at", "call_sid", "call_status")


@dataclass(frozen=True)
class Bucket:
    """A fixed-window counter: at most ``limit`` hits per ``window`` seconds under ``key``."""

    key: str
    limit: int
    window: int


class Reservation(NamedTuple):
    """What ``Store.reserve_attempt`` did: one attempt and one failure counted, or nothing."""

    challenge: Challenge | None
    """The challenge with the attempt counted; ``None`` when nothing was counted."""
    failures: int
    """The user's failures in the lockout window, this reservation included."""
    locked_for: float
    """Seconds the user is still locked out (``> 0``: refused, nothing counted)."""


@runtime_checkable
class Store(Protocol):
    """What the middleware needs from a store. All methods may raise ``StoreError``."""

    async def create(self, challenge: Challenge) -> None:
        """Save a new challenge until its ``expires_at``."""

    async def get(self, challenge_id: str) -> Challenge | None:
        """The live challenge, or ``None`` when unknown or expired."""

    async def live_challenge(self, user_tag: str) -> Challenge | None:
        """The user's newest live challenge, or ``None`` (S21: another visit places no call)."""

    async def reserve_attempt(
        self, challenge_id: str, max_attempts: int, *, lockout: Bucket, now: float
    ) -> Reservation:
        """Reserve one attempt and one failure before the code is compared, in one atomic step
        (S19): the comparison is then bounded by both limits, however many run at once.

        Refused, counting nothing, when the user's failure counter ``lockout`` is at its limit
        (``locked_for`` > 0), or the challenge is unknown, expired or has used ``max_attempts``
        attempts (``challenge`` is ``None``). A right code then clears ``lockout.key``.
        """

    async def consume(self, challenge_id: str, code_mac: str) -> bool:
        """Delete the challenge if it still holds ``code_mac``; ``True`` for exactly one
        caller (a resend in between installs another code, and the old one loses)."""

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
        """Grant a call slot and install a new code in one step.

        Returns ``0`` when granted, the seconds to wait when the cooldown or the call limit
        refuses it, or ``None`` when the challenge is gone.
        """

    async def update_call(
        self,
        challenge_id: str,
        call_nonce: str,
        *,
        call_sid: str | None = None,
        status: str | None = None,
        drop_code: bool = False,
    ) -> Challenge | None:
        """Update the call of a challenge if ``call_nonce`` is still its current call.

        ``call_sid`` is recorded only when none is recorded yet. Returns the updated
        challenge, or ``None`` when it is gone or the call is not its current one.
        """

    async def rollback_call(self, challenge_id: str, call_nonce: str, previous: Challenge) -> None:
        """Undo ``begin_call`` after the provider refused the call: if ``call_nonce`` is
        still the current call, put back the code and call fields of ``previous``."""

    async def delete(self, challenge_id: str) -> None:
        """Forget a challenge."""

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        """All or nothing: count one hit in every bucket, or in none.

        Returns ``0`` when counted, else the seconds until the fullest bucket resets.
        """

    async def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
        """Count one hit; returns the count in the window and the seconds it has left."""

    async def peek(self, key: str, now: float) -> tuple[int, float]:
        """The count and seconds left of a counter (``(0, 0)`` when absent)."""

    async def clear(self, key: str) -> None:
        """Reset a counter."""

    async def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot answer."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryStore:
    """The embedded default: one process, bounded, on cachetools ``TLRUCache``.

    Each entry expires at its own time. When ``max_challenges`` live challenges are held,
    new ones are refused (``StoreFullError``, a 503) rather than evicting live ones: an
    attacker who floods the store then cannot silently cancel other users' challenges, and
    the call limits per client address bound how fast anyone can fill it. Counters are
    bounded too (four per challenge); the least recently used expire first when full.

    Every method runs without awaiting inside, so each is atomic on the event loop.
    """

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
        if status:
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

    async def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
        count, reset_at = self._counter(key, now)
        entry = (count + 1, reset_at if count else now + window)
        self._counters[key] = entry
        return entry[0], entry[1] - now

    async def peek(self, key: str, now: float) -> tuple[int, float]:
        count, reset_at = self._counter(key, now)
        return count, max(reset_at - now, 0.0)

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

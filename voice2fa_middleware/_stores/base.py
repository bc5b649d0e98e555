"""Where challenges and counters live: the protocol (``MemoryStore`` and ``RedisStore`` follow).

The core decides (codes, limits, expiry); a store only stores, but every operation that
must be atomic is one call, so that a store shared by several workers (``RedisStore``)
cannot be raced: counting an attempt, consuming a challenge, granting a call slot and
taking from several rate-limit buckets at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from .._core.crypto import new_id

Clock = Callable[[], float]

# Keys that one atomic step touches together must live on one Redis Cluster node: a key's
# slot is hashed from its "hash tag", the text between its first "{" and "}". Everything of
# one user (their live challenge, failures, own budgets) is tagged with the first characters
# of the user's tag (4 hex digits: 65,536 tags spread over the cluster's 16,384 slots).
_USER_SHARD = 4


def user_key(user_tag: str) -> str:
    """``user_tag`` with its shard as a hash tag: keys built on it share the user's slot."""
    return "{" + user_tag[:_USER_SHARD] + "}" + user_tag[_USER_SHARD:]


def own_slot(tag: str) -> str:
    """A tag that is its own hash tag (a phone's, a client's): a slot of its own."""
    return "{" + tag + "}"


def challenge_id(user_tag: str) -> str:
    """A new challenge id: random, led by the user's shard (so a store shared by a Redis
    Cluster keeps a challenge in its user's slot). The shard is part of a keyed tag: it says
    nothing about who the user is."""
    return user_tag[:_USER_SHARD] + "." + new_id()


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
        return {name: str(getattr(self, name)) for name in _CHALLENGE_FIELDS}

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


_CHALLENGE_FIELDS = tuple(f.name for f in dataclasses.fields(Challenge))


ROLLBACK_FIELDS = ("code_mac", "code", "call_nonce", "calls", "last_call_at", "call_sid", "call_status")


@dataclass(frozen=True)
class Bucket:
    """A fixed-window counter: at most ``limit`` hits per ``window`` seconds under ``key``."""

    key: str
    limit: int
    window: int
    name: str = field(default="", compare=False)
    """What the budget is called in audit events, metrics and logs (``"user"``, ``"all"``...);
    stores ignore it."""


class Reservation(NamedTuple):
    """What ``Store.reserve_attempt`` did: one attempt and one failure counted, or nothing."""

    challenge: Challenge | None
    """The challenge with the attempt counted; ``None`` when nothing was counted."""
    failures: int
    """The user's failures in the lockout window, this reservation included."""
    locked_for: float
    """Seconds the user is still locked out (``> 0``: refused, nothing counted)."""


class Start(NamedTuple):
    """What ``Store.start`` did."""

    challenge: Challenge | None
    """The user's live challenge for this binding: ``created`` now, or an earlier one."""
    created: bool
    """``True`` when ``challenge`` is the one passed in, saved with its first call granted."""
    locked_for: float = 0.0
    """Seconds the user is still locked out (``> 0``: refused, nothing saved or counted)."""
    wait: float = 0.0
    """Seconds until a spent budget resets (``> 0``: refused, nothing saved or counted)."""
    charged: tuple[Bucket, ...] = ()
    """The buckets the new challenge's first call was charged to (``known`` or ``new``):
    what ``Store.refund`` gives back when the provider does not accept that call."""


@runtime_checkable
class Store(Protocol):
    """What the middleware needs from a store. All methods may raise ``StoreError``.

    Two capabilities tell the middleware how to treat a store (give both on your own):

    - ``shared``: ``True`` when several processes see the same data (then every process must
      share ``VOICE2FA_SECRET_KEY``, which start-up checks);
    - ``deadline_free``: ``True`` when no method ever waits on I/O (an in-process store), so
      the middleware skips the store timeout's cancel scope.
    """

    shared: bool
    deadline_free: bool

    async def create(self, challenge: Challenge) -> None:
        """Save a new challenge until its ``expires_at``."""

    async def get(self, challenge_id: str) -> Challenge | None:
        """The live challenge, or ``None`` when unknown or expired."""

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
        """Everything that starting a challenge needs, as one atomic step (S4, S8, S21):

        1. if the user (``challenge.user_tag``) has a live challenge with the same
           ``binding``, return it and do nothing else; one with another binding is deleted;
        2. refuse when the failure counter ``lockout`` is at its limit;
        3. charge one call to the ``known`` buckets when the counter ``known_key`` is above
           zero (the user verified this phone before), else to the ``new`` ones: all or none;
        4. save ``challenge`` (made with its first call already installed) as the user's
           live challenge until its ``expires_at``.
        """

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

        ``call_sid`` is recorded only when none is recorded yet. ``status`` only moves
        forward (``_telephony.status.RANK``): status callbacks may arrive out of order, and a
        ``ringing`` after ``completed`` changes nothing. Running it twice changes nothing more
        than running it once. Returns the updated challenge, or ``None`` when it is gone or
        the call is not its current one.
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

    async def hit(self, key: str, window: int, now: float, *, renew: bool = False) -> tuple[int, float]:
        """Count one hit; returns the count in the window and the seconds it has left.

        ``renew``: the window starts again from ``now`` (a sliding "seen lately" mark, such
        as a phone the user verified) instead of running from the first hit."""

    async def refund(self, buckets: Sequence[Bucket], now: float) -> None:
        """Give back one hit to each bucket that still counts one (never below zero): a call
        was charged but the provider did not accept it (S26)."""

    async def reserve_slot(self, key: str, interval: float, now: float, max_wait: float) -> float:
        """Take the next free slot of a pacer (a token bucket of one token every ``interval``
        seconds, shared by every process that sees the store): the seconds from ``now`` until
        this caller may act, its slot taken, each concurrent caller getting the next one
        (atomic). When that is more than ``max_wait``, nothing is taken and the wait is
        returned all the same (the caller refuses, and says when to come back).

        Pacing calls to the provider's calls per second: see ``calls_per_second``."""

    async def peek(self, key: str, now: float) -> tuple[int, float]:
        """The count and seconds left of a counter (``(0, 0)`` when absent)."""

    async def clear(self, key: str) -> None:
        """Reset a counter."""

    async def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot answer."""

    async def aclose(self) -> None:
        """Release connections."""

"""Remembered devices a support operator forgot: a per-user "not before" time for remember proofs.

Proofs are signed cookies, so nothing in the store lists a user's devices. Forgetting them
(``Support.forget_devices``) saves the time it happened under ``revoked:{user_key}`` (a
counter renewed at that moment, living ``remember_days``, as long as any remember cookie), and
a remember proof signed before it no longer counts.

``Cookies.verified_at`` runs on every protected request with no store access, so the check
costs nothing on the common path: only a request whose proof can be a remember cookie alone
(a remember cookie and no verified cookie) reads the store, before the proof is checked
(``Voice2FAHandle._ask``), and the answer is kept per process for 60 s. A store failure there
is logged and the proof is honoured (the store is not the only line: the remember cookie is
bound to the user, phone and ``Identity.version``). Other processes see a forget within 60 s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._core.crypto import Keyring
from .._core.rules import as_identity
from .._errors import StoreError
from .._stores.base import Store, user_key

logger = logging.getLogger("voice2fa")

CACHE_SECONDS = 60.0
# A margin for the store's rounding of a counter's time left: a proof signed within a second
# after the forget is refused too (its user verifies again), never one signed before it kept.
_MARGIN = 1.0

Run = Callable[[Awaitable[Any]], Awaitable[Any]]


async def _as_is(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class RememberedDevices:
    """The "not before" time of each user's remember proofs, from the store, cached."""

    def __init__(
        self,
        store: Store,
        keys: Keyring,
        remember_days: int,
        clock: Callable[[], float],
        run: Run = _as_is,
        remember_names: frozenset[str] = frozenset(),
        verified_names: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.keys = keys
        self.window = max(1, remember_days) * 86400
        self.clock = clock
        self.run = run
        self.remember_names = remember_names
        self.verified_names = verified_names
        # user id -> (not before, good until); a plain dict, bounded below.
        self._cache: dict[str, tuple[float, float]] = {}

    def key(self, user_id: str) -> str:
        return "revoked:" + user_key(self.keys.tag("user", user_id))

    async def forget(self, user_id: str) -> float:
        """Every remember proof of the user signed until now stops counting. Returns the time."""
        now = self.clock()
        await self.run(self.store.hit(self.key(user_id), self.window, now, renew=True))
        self._keep(user_id, now + _MARGIN, now)
        return now

    async def forgotten_at(self, user_id: str) -> float:
        """When the user's devices were last forgotten (0: never, or longer ago than a remember
        cookie lives), read from the store."""
        now = self.clock()
        count, left = await self.run(self.store.peek(self.key(user_id), now))
        return now - (self.window - float(left)) if count else 0.0

    def not_before(self, user_id: str) -> float:
        """The cached "not before" time of the user's remember proofs (0: none known)."""
        found = self._cache.get(user_id)
        return found[0] if found is not None else 0.0

    def remember_only(self, cookies: dict[str, str]) -> bool:
        """Whether a remember cookie may be this request's only proof (no verified cookie)."""
        # A plain loop, not any(): this runs on every protected request (a generator costs more
        # than the lookups), and the common case, no remember cookie, ends here.
        for name in self.remember_names:
            if name in cookies:
                break
        else:
            return False
        return all(name not in cookies for name in self.verified_names)  # rare: a remember cookie

    async def refresh(self, user_id: str) -> None:
        """Read the user's "not before" time when the cached one is older than a minute."""
        now = self.clock()
        found = self._cache.get(user_id)
        if found is not None and now < found[1]:
            return
        try:
            at = await self.forgotten_at(user_id)
        except StoreError as exc:
            logger.warning("voice2fa: could not read forgotten devices; the remember proof is honoured: %s", exc)
            return
        self._keep(user_id, at + _MARGIN if at else 0.0, now)

    def _keep(self, user_id: str, not_before: float, now: float) -> None:
        if len(self._cache) >= 10_000:
            self._cache.clear()  # bounded; a miss costs one store read
        self._cache[user_id] = (not_before, now + CACHE_SECONDS)

    async def after_identify(self, identified: Awaitable[object]) -> object:
        """``identify``'s answer, the user's "not before" time refreshed first (see the module)."""
        result = await identified
        identity = as_identity(result)
        if identity is not None:
            await self.refresh(identity.user_id)
        return result

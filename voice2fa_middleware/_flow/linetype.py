"""VoIP numbers the number ranges do not show: a line-type lookup before the first call.

With ``lookup_line_type`` (and ``allow_voip`` off), a number is looked up
(``_telephony.lookup``) before the first call to it, and a ``voip`` line is refused like a
VoIP range. The answer is kept in the store for ``LINE_TYPE_DAYS`` (one lookup per number,
not per call: lookups are billed). A number the user verified before is never looked up, and
a lookup or store that fails never blocks a call: the lookup is a second line, the number
ranges (``check_phone``) the first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._core.crypto import Keyring
from .._errors import StoreError
from .._settings import Voice2FASettings
from .._stores.base import Store, own_slot
from .._telephony.lookup import LineTypeLookup
from .budgets import Budgets

logger = logging.getLogger("voice2fa")

LINE_TYPE_DAYS = 30


class LineTypes:
    """Whether a number is a VoIP line, by lookup, cached in the store."""

    def __init__(
        self,
        settings: Voice2FASettings,
        store: Store,
        keys: Keyring,
        clock: Callable[[], float],
        run: Callable[[Awaitable[Any]], Awaitable[Any]],
        lookup: LineTypeLookup,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.run = run
        self.lookup = lookup
        self.budgets = Budgets(settings, keys, calls_nobody=False)
        self.window = LINE_TYPE_DAYS * 86400

    async def is_voip(self, e164: str, user_id: str) -> bool:
        """``True`` only when a lookup (now or cached) said ``voip`` for a number the user never
        verified. Never raises: a failing store or lookup lets the call go ahead."""
        try:
            return await self._is_voip(e164, user_id)
        except StoreError as exc:
            logger.warning("voice2fa: the line type of a number could not be checked: %s", exc)
            return False

    async def _is_voip(self, e164: str, user_id: str) -> bool:
        now = self.clock()
        known, _ = await self.run(
            self.store.peek(self.budgets.known_phone_key(self.keys.tag("user", user_id), e164), now)
        )
        if known:
            return False
        slot = own_slot(self.keys.tag("phone", e164))
        voip_key, other_key = "line:voip:" + slot, "line:other:" + slot
        if (await self.run(self.store.peek(voip_key, now)))[0]:
            return True
        if (await self.run(self.store.peek(other_key, now)))[0]:
            return False
        kind = await self.lookup.line_type(e164)
        if kind is None:
            return False  # not kept: asked again next time
        await self.run(self.store.hit(voip_key if kind == "voip" else other_key, self.window, now))
        return kind == "voip"

    async def aclose(self) -> None:
        await self.lookup.aclose()

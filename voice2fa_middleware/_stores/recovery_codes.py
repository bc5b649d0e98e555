"""Where recovery codes live: the app's own database, through the ``RecoveryCodeStore`` protocol.

Recovery codes must outlive any store TTL (a set is good until the user creates another or
uses every code), and belong with the account: so the middleware keeps no recovery code
itself. The app implements three async methods on its database (a recipe for SQLAlchemy is
in ``examples/fastapi_users_app.py``); ``MemoryRecoveryCodes`` is the in-process one for
demos and tests. Only keyed hashes are ever passed in: a database dump yields no code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class RecoveryCodeStore(Protocol):
    """The app's persistence of recovery codes (keyed hashes only). May raise anything: the
    middleware turns a failure into a 503 (fail closed), never a grant."""

    async def save(self, user_id: str, hashes: Sequence[str]) -> None:
        """Replace the user's codes with these: every code of an earlier set stops working."""

    async def remaining(self, user_id: str) -> int:
        """How many of the user's codes are not used yet."""

    async def consume(self, user_id: str, code_hash: str) -> bool:
        """Mark the code used if it is the user's and unused: ``True`` for exactly one caller,
        however many try at once (SQL: one ``UPDATE ... WHERE used_at IS NULL``, then check
        the row count)."""


class MemoryRecoveryCodes:
    """``RecoveryCodeStore`` in this process's memory: for the demo and tests (codes are lost
    on restart and not shared between workers). A lock makes ``consume`` atomic even when
    several event loops or threads share the instance."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # user id -> code hash -> when it was used (None: unused)
        self._codes: dict[str, dict[str, float | None]] = {}

    async def save(self, user_id: str, hashes: Sequence[str]) -> None:
        with self._lock:
            self._codes[user_id] = dict.fromkeys(hashes)

    async def remaining(self, user_id: str) -> int:
        with self._lock:
            return sum(1 for used in self._codes.get(user_id, {}).values() if used is None)

    async def consume(self, user_id: str, code_hash: str) -> bool:
        with self._lock:
            codes = self._codes.get(user_id)
            if codes is None or code_hash not in codes or codes[code_hash] is not None:
                return False
            codes[code_hash] = self._clock()
            return True

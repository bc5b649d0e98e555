"""The store extension point: what the middleware keeps between requests, and where.

Write your own store by implementing :class:`Store` (every method is async and may raise
``StoreError``); run the conformance suite in ``tests/test_store_conformance.py`` against
it. App authors pick one of the two that ship:

- :class:`MemoryStore`: one process, a bounded TTL cache (the default).
- :class:`RedisStore`: several workers or hosts (one server, Sentinel or a cluster); needs
  ``pip install '.[redis]'`` and is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import StoreError, StoreFullError
from ._stores.base import Bucket, Challenge, Reservation, Start, Store, challenge_id
from ._stores.memory import MemoryStore
from ._stores.recovery_codes import MemoryRecoveryCodes, RecoveryCodeStore

if TYPE_CHECKING:  # imported on first use at run time (needs the 'redis' extra); see __getattr__
    from ._stores.redis import RedisStore

__all__ = [
    "Bucket",
    "Challenge",
    "MemoryRecoveryCodes",
    "MemoryStore",
    "RecoveryCodeStore",
    "RedisStore",
    "Reservation",
    "Start",
    "Store",
    "StoreError",
    "StoreFullError",
    "challenge_id",
]


def __getattr__(name: str) -> object:
    # RedisStore needs the 'redis' extra: imported on first use only.
    if name == "RedisStore":
        from ._stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'voice2fa_middleware.stores' has no attribute {name!r}")

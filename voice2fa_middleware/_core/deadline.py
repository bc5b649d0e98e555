"""A time limit on one awaitable, as cheap as the event loop allows.

Every store operation runs under a deadline. ``anyio.fail_after`` works on any event loop but
costs about 25-40 us to enter and leave; ``asyncio.timeout`` does the same for about 11 us.
It is used only where it is safe: on Python 3.11.3 and later (before, it could turn an expired
deadline into a ``CancelledError`` when a cancellation was pending: CPython gh-102780), and
only for awaitables that run on asyncio and rely on no anyio shield (``asyncio.timeout``
cancels the task natively, which an anyio ``CancelScope(shield=True)`` does not hold off).
Both raise ``TimeoutError`` when time runs out.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")

# Cancels the task once and takes the cancellation back (Task.uncancel): an outer
# cancellation is never swallowed.
NATIVE = sys.version_info >= (3, 11, 3)


async def within(seconds: float, awaitable: Awaitable[T], *, native: bool = False) -> T:
    """``awaitable``'s result, or ``TimeoutError`` after ``seconds``.

    ``native``: the awaitable runs on asyncio only and uses no anyio shield (redis-py's
    client on one server), so asyncio's own timeout may bound it.
    """
    if native and NATIVE:
        async with asyncio.timeout(seconds):  # type: ignore[attr-defined,unused-ignore]
            return await awaitable
    with anyio.fail_after(seconds):
        return await awaitable

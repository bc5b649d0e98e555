"""A time limit on one awaitable, as cheap as the event loop allows.

Every store operation and every Create Call runs under a deadline. ``anyio.fail_after``
works on any event loop but costs about 25-40 µs to enter and leave; on asyncio,
``asyncio.timeout`` (Python 3.11+) or, before it, ``async_timeout`` (the package it came
from, which redis-py installs on those Pythons) does the same for about 9-11 µs. A challenge
on RedisStore runs two deadlines. All raise ``TimeoutError`` when time runs out.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def _asyncio_timeout() -> Any:
    # asyncio.timeout cancels the task once and takes the cancellation back (Task.uncancel),
    # so an outer cancellation is never swallowed.
    if hasattr(asyncio, "timeout"):
        return asyncio.timeout
    try:
        return importlib.import_module("async_timeout").timeout
    except ImportError:
        return None


_ASYNCIO_TIMEOUT = _asyncio_timeout()


def on_asyncio() -> bool:
    """Whether the running task is an asyncio task (not trio's, say under hypercorn)."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no asyncio loop running in this thread
        return False


async def within(seconds: float, awaitable: Awaitable[T], *, asyncio_only: bool = False) -> T:
    """``awaitable``'s result, or ``TimeoutError`` after ``seconds``.

    ``asyncio_only``: the awaitable can only run on asyncio (redis-py's client), so the
    running loop need not be asked which it is.
    """
    if _ASYNCIO_TIMEOUT is not None and (asyncio_only or on_asyncio()):
        try:
            async with _ASYNCIO_TIMEOUT(seconds):
                return await awaitable
        except asyncio.TimeoutError as exc:  # async_timeout's; TimeoutError itself from 3.11
            if isinstance(exc, TimeoutError):
                raise
            raise TimeoutError("timed out") from exc
    with anyio.fail_after(seconds):
        return await awaitable

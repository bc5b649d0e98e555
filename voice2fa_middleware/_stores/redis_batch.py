"""Scripts that concurrent requests run, sent to Redis together: one pipeline per turn of the
event loop (one connection taken from the pool, one write, one read), instead of one of each
per script.

redis-py spends far more time per command in Python (taking a connection from the pool,
retry and observability wrappers, a wake-up of the waiting task per reply) than Redis spends
running a script. A request queues its script and waits; at the end of the event loop's turn
every script queued in it goes out in one non-transactional pipeline, and each request gets
its own reply or error. Nothing is traded away: each script still runs atomically on the
server, scripts of one request still run in the order it sends them (it awaits each), and a
pipeline that fails (connection lost, timeout) fails every request in it closed. A request
whose deadline passes stops waiting; its script may still run, as with one command whose
answer is lost. A lone request is a pipeline of one.

Only for one server or a Sentinel-managed master: on a Redis Cluster each script goes to its
own slot's node, and redis-py's cluster client runs them one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import redis_scripts as lua

if TYPE_CHECKING:  # pragma: no cover
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

# Redis reads a pipeline's commands one after the other: a bounded batch keeps one burst of
# requests from holding the others' replies back behind it.
MAX_BATCH = 64


def text(v: Any) -> str:
    """A reply's string (bytes unless the client decodes replies)."""
    return v.decode() if isinstance(v, bytes) else str(v)


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A flat ``[name, value, ...]`` reply (HGETALL) as a dict."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


class Scripts:
    """``RedisStore``'s Lua scripts (``_redis_scripts``), registered with redis-py's client
    (each call one command) or with a ``Batcher``."""

    def __init__(self, register: Callable[[str], Any]) -> None:
        self.reserve = register(lua.RESERVE)
        self.begin_call = register(lua.BEGIN_CALL)
        self.update_call = register(lua.UPDATE_CALL)
        self.take = register(lua.TAKE)
        self.consume = register(lua.CONSUME)
        self.rollback = register(lua.ROLLBACK)
        self.hit = register(lua.HIT)
        self.peek = register(lua.PEEK)
        self.create = register(lua.CREATE)
        self.live = register(lua.LIVE)
        self.start = register(lua.START)
        self.untake = register(lua.UNTAKE)
        self.abandon = register(lua.ABANDON)
        self.reserve_slot = register(lua.RESERVE_SLOT)


class BatchedScript:
    """A Lua script registered for batching: call it as redis-py's ``AsyncScript``."""

    def __init__(self, batcher: Batcher, script: AsyncScript) -> None:
        self._batcher = batcher
        self.script = script  # runs it alone, loading it first when Redis lost it (NOSCRIPT)
        self.sha = script.sha

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self._batcher.submit(self, keys, args)


class Batcher:
    """Collects scripts for one turn of the event loop and sends them in one pipeline."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._client = client
        self._queue: list[tuple[BatchedScript, Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed = False  # a flush is scheduled on self._loop

    def register_script(self, text: str) -> BatchedScript:
        return BatchedScript(self, self._client.register_script(text))

    def submit(self, script: BatchedScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # another event loop (the last one stopped): start afresh
            self._loop, self._queue, self._armed = loop, [], False
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        if not self._armed:
            # After every task already ready in this turn has run and queued its script.
            self._armed = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._armed = False
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[BatchedScript, Sequence[Any], Sequence[Any], asyncio.Future[Any]]]) -> None:
        from redis.exceptions import NoScriptError

        live = [item for item in batch if not item[3].done()]  # a caller may have given up already
        if not live:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for script, keys, args, _future in live:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_rest, future in live:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        try:
            for (script, keys, args, future), reply in zip(live, replies, strict=True):
                if future.done():  # its caller gave up: nothing more is run for it
                    continue
                if isinstance(reply, NoScriptError):  # Redis restarted or flushed its scripts
                    try:
                        reply = await script.script(keys=keys, args=args)
                    except Exception as exc:
                        reply = exc
                if future.done():
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        finally:  # whatever went wrong above, no caller is left waiting
            for *_rest, future in live:
                if not future.done():
                    future.set_exception(ConnectionError("the batch's replies could not be read"))

    async def aclose(self) -> None:
        """Wait for the pipelines in flight (each bounded by the client's socket timeout, as
        the store's own clients do not retry; a client passed in may)."""
        loop = asyncio.get_running_loop()
        here = [task for task in self._sending if task.get_loop() is loop]
        if here:
            await asyncio.gather(*here, return_exceptions=True)

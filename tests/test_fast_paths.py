"""The challenge path's shortcuts keep their meaning: each cheaper way of doing a thing gives
what the plain way gave (tokens, cookie headers, client groups, languages, spans, deadlines),
and batching the scripts of concurrent requests into one Redis pipeline keeps every script
atomic, every reply with its own request, and fails every request in a failed batch closed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from starlette.requests import HTTPConnection
from starlette.responses import Response

from voice2fa_middleware import Bucket, StoreError, Voice2FASettings
from voice2fa_middleware._core.crypto import Keyring
from voice2fa_middleware._core.deadline import within
from voice2fa_middleware._flow.budgets import client_group
from voice2fa_middleware._i18n.catalogs import Translations
from voice2fa_middleware._web.cookies import Cookies

from .conftest import SECRET

OLD_SECRET = "an-older-secret-key-0123456789abcdef"

# -- signed tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [{"c": "ab12.x", "u": "u" * 32, "x": "t" * 24, "n": "/pay?a=1"}, ["id", "nonce"]])
def test_tokens_read_both_ways_with_itsdangerous(payload: Any) -> None:
    keys = Keyring([SECRET, OLD_SECRET])
    plain = URLSafeTimedSerializer([OLD_SECRET, SECRET], salt="voice2fa.pending")  # newest last
    ours = keys.pending.dumps(payload)
    assert plain.loads(ours) == payload  # ours are itsdangerous tokens
    assert keys.load(keys.pending, plain.dumps(payload), 60) == payload  # and we read theirs
    # Signed with the older key (before a rotation): still good.
    assert keys.load(keys.pending, Keyring([OLD_SECRET]).pending.dumps(payload), 60) == payload
    # The purposes stay apart: a pending cookie is no call token.
    assert keys.load(keys.call, ours, 60) is None


def test_long_payloads_are_still_compressed_and_bad_tokens_refused() -> None:
    keys = Keyring([SECRET])
    payload = {"n": "/" + "a" * 900}
    token = keys.pending.dumps(payload)
    assert token.startswith(".") and len(token) < 200  # zlib, as itsdangerous does it
    assert keys.load(keys.pending, token, 60) == payload
    small = keys.pending.dumps({"c": "x"})
    assert not small.startswith(".")
    tampered = small[:-2] + ("A" if small[-2] != "A" else "B") + small[-1]
    assert keys.load(keys.pending, tampered, 60) is None
    assert keys.load(Keyring(["another-secret-key-0123456789abcdef"]).pending, small, 60) is None


# -- cookie headers ------------------------------------------------------------------------

_TOKEN = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=300)
_ODD = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(_TOKEN, _ODD),
    kind=st.sampled_from(["pending", "verified", "remember"]),
    scheme=st.sampled_from(["http", "https"]),
    root_path=st.sampled_from(["", "/app", "/a b", "/x;y", "/ünï"]),
    prefix=st.sampled_from(["voice2fa_", "v2_", "my-app."]),
    always_secure=st.sampled_from([None, True, False]),
)
def test_cookie_headers_are_starlettes(
    value: str, kind: Any, scheme: str, root_path: str, prefix: str, always_secure: bool | None
) -> None:
    s = Voice2FASettings(secret_key=SECRET, cookie_name_prefix=prefix, cookie_secure=always_secure)
    cookies = Cookies(s, Keyring([SECRET]), time.time)
    conn = HTTPConnection({"type": "http", "scheme": scheme, "root_path": root_path, "path": "/", "headers": []})
    ours, theirs = Response(), Response()
    cookies.set(ours, conn, kind, value)
    theirs.set_cookie(
        cookies.name(conn, kind),
        value,
        max_age=cookies._max_ages[kind],
        path=cookies.path_of(conn.scope),
        secure=cookies.secure(conn.scope),
        httponly=True,
        samesite="lax",
    )
    assert ours.raw_headers == theirs.raw_headers


def test_cookie_headers_with_a_max_age_that_is_no_int_are_starlettes() -> None:
    cookies = Cookies(Voice2FASettings(secret_key=SECRET), Keyring([SECRET]), time.time)
    cookies._max_ages["pending"] = 300.7  # type: ignore[assignment]
    conn = HTTPConnection({"type": "http", "scheme": "https", "root_path": "", "path": "/", "headers": []})
    ours, theirs = Response(), Response()
    cookies.set(ours, conn, "pending", "abc.def")
    theirs.set_cookie(cookies.name(conn, "pending"), "abc.def", max_age=300.7, path="/", secure=True,  # type: ignore[arg-type]
                      httponly=True, samesite="lax")
    assert ours.raw_headers == theirs.raw_headers


# -- client groups and languages ---------------------------------------------------------


def test_client_groups_are_cached_and_bounded() -> None:
    cases = {
        "203.0.113.7": "203.0.113.7",
        "2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
        "2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
        "::ffff:198.51.100.9": "198.51.100.9",
        "not-an-address": "not-an-address",
        "x" * 100: "x" * 64,
    }
    for _ in range(2):  # computed, then from the cache: the same
        assert {a: client_group(a) for a in cases} == cases
    assert client_group.cache_info().maxsize == 4096
    for i in range(5000):  # a client rotating addresses cannot grow it
        client_group(f"2001:db8::{i:x}")
    assert client_group.cache_info().currsize <= 4096


def test_language_negotiation_is_cached_and_bounded() -> None:
    t = Translations()
    headers = [None, "", "de-DE,de;q=0.9,en;q=0.8", "zh-TW,ja;q=0.5", "xx,yy;q=0", "fr;q=0.1,es;q=0.2"]
    first = [t.negotiate(h) for h in headers]
    assert first == ["en", "en", "de", "ja", "en", "es"]
    assert [t.negotiate(h) for h in headers] == first
    assert t.negotiate(None, "fr") == "fr"  # the default is part of what is remembered
    for i in range(3000):
        t.negotiate(f"x{i},de")
    assert len(t._negotiated) <= 1024
    assert t.negotiate("a" * 600 + ",de") == "en"  # past 512 characters nothing is read
    assert t.negotiate("de," + "a" * 600) == "de"


# -- deadlines -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("native", [False, True])
async def test_within_returns_times_out_and_lets_outer_cancellation_through(native: bool) -> None:
    async def late(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    assert await within(1, late(0), native=native) == "done"
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # the builtin, on every Python
        await within(0.05, late(5), native=native)
    assert time.monotonic() - started < 1

    task = asyncio.get_running_loop().create_task(within(5, late(5), native=native))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # not turned into a timeout
        await task
    # A deadline inside a cancel scope that ends first: the scope's cancellation wins.
    with anyio.move_on_after(0.05) as scope:
        await within(5, late(5), native=native)
    assert scope.cancelled_caught


def test_within_on_trio_uses_anyio() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        assert await within(1, trio.sleep(0)) is None
        with pytest.raises(TimeoutError):
            await within(0.05, trio.sleep(5))

    anyio.run(main, backend="trio")


def test_native_deadlines_only_where_they_hold() -> None:
    """asyncio.timeout only from Python 3.11.3 (gh-102780), and never on a cluster, whose
    undo step runs in an anyio shield that a native cancellation would cut through."""
    from voice2fa_middleware._core import deadline as _deadline

    assert (sys.version_info >= (3, 11, 3)) == _deadline.NATIVE
    pytest.importorskip("redis")
    from voice2fa_middleware import RedisStore

    assert RedisStore("redis://127.0.0.1:1/0").native_deadline is True
    assert RedisStore("redis+cluster://127.0.0.1:1").native_deadline is False


# -- spans ---------------------------------------------------------------------------------


def test_spans_start_once_the_app_sets_a_tracer_provider() -> None:
    """No provider: spans are skipped (they would be no-ops). A provider set after the
    middleware was built (say in the app's lifespan) is used from then on."""
    pytest.importorskip("opentelemetry.sdk")
    script = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voice2fa_middleware._core.telemetry import Telemetry

telemetry = Telemetry()
with telemetry.span("voice2fa.before", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, "client"):
    pass
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
with telemetry.span("voice2fa.after", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, "client", n=1):
    pass
spans = exporter.get_finished_spans()
print([(s.name, format(s.context.trace_id, "032x"), dict(s.attributes)) for s in spans])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([("voice2fa.after", "1" * 32, {"n": 1})])


# -- one pipeline for concurrent scripts (RedisStore on one server) ------------------------


@pytest.fixture
async def redis_store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    from .conftest import make_store

    store = make_store("redis", request)
    yield store
    await store.aclose()


def _count_pipelines(store: Any) -> list[int]:
    """Wrap the client's pipeline(): the sizes of the pipelines sent."""
    client = store._redis
    sizes: list[int] = []
    original = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **kw: Any) -> Any:
            sizes.append(len(pipe.command_stack))
            return await execute(*a, **kw)

        pipe.execute = counted
        return pipe

    client.pipeline = pipeline
    return sizes


@pytest.mark.redis
@pytest.mark.anyio
async def test_concurrent_scripts_share_pipelines_and_stay_atomic(redis_store: Any) -> None:
    sizes = _count_pipelines(redis_store)
    counts = await asyncio.gather(*(redis_store.hit("k", 60, time.time()) for _ in range(150)))
    assert sorted(c for c, _ in counts) == list(range(1, 151))  # each INCR once, each its own reply
    assert sum(sizes) == 150 and len(sizes) < 150 and max(sizes) <= 64  # batched, bounded batches
    # All or nothing still holds per script: 30 takes of a budget of 10, side by side.
    bucket = [Bucket("b", 10, 60)]
    waits = await asyncio.gather(*(redis_store.take(bucket, time.time()) for _ in range(30)))
    assert sum(1 for w in waits if w == 0) == 10 and all(0 < w <= 60 for w in waits if w)
    # A lone request is a pipeline of one.
    sizes.clear()
    assert (await redis_store.peek("k", time.time()))[0] == 150
    assert sizes == [1]


@pytest.mark.redis
@pytest.mark.anyio
async def test_scripts_come_back_after_redis_forgets_them(redis_store: Any) -> None:
    await redis_store.hit("k", 60, time.time())
    await redis_store._redis.script_flush()  # as after a restart or a failover to a fresh node
    counts = await asyncio.gather(*(redis_store.hit("k", 60, time.time()) for _ in range(10)))
    assert sorted(c for c, _ in counts) == list(range(2, 12))


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_request_that_gives_up_does_not_disturb_the_batch(redis_store: Any) -> None:
    async def impatient() -> None:
        with anyio.move_on_after(0):  # cancelled before its batch is sent
            await redis_store.hit("k", 60, time.time())

    results = await asyncio.gather(impatient(), *(redis_store.hit("k", 60, time.time()) for _ in range(5)))
    counts = sorted(c for c, _ in results[1:])  # type: ignore[misc]
    assert counts == list(range(1, 6))  # the one that gave up ran nothing


@pytest.mark.anyio
async def test_a_failed_batch_fails_every_request_in_it_closed() -> None:
    pytest.importorskip("redis")
    from voice2fa_middleware import RedisStore
    from voice2fa_middleware.testing import port_for_later

    store = RedisStore(f"redis://127.0.0.1:{port_for_later()}/0", timeout=0.5)  # nothing listens
    results = await asyncio.gather(*(store.hit("k", 60, time.time()) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results), results
    await store.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_flush_left_on_a_stopped_loop_does_not_stall_the_next(redis_store: Any) -> None:
    """A flush scheduled on an event loop that stopped before running it (a server restarted
    in the same process, tests) must not leave the store waiting for it forever."""
    batcher = redis_store._batch
    stale: Any = asyncio.new_event_loop()
    batcher._loop, batcher._armed = stale, True
    batcher._queue.append((redis_store._lua.hit, ["x"], [1000], stale.create_future()))
    with anyio.fail_after(5):
        assert (await redis_store.hit("k", 60, time.time()))[0] == 1
    assert batcher._queue == []
    stale.close()


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_script_whose_answer_is_lost_is_not_sent_again(request: pytest.FixtureRequest) -> None:
    """A proxy forwards the store's first script to Redis, then cuts the connection before
    the answer: the request fails closed, and the script ran once (the store's own clients
    never retry, as a script may not run twice; with redis-py's Retry(..., 3) it ran 4 times)."""
    from redis.asyncio import Redis

    from voice2fa_middleware import RedisStore

    from .conftest import RedisServer

    server: RedisServer = request.getfixturevalue("redis_server")
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    cut = {"done": False}

    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))

        async def down() -> None:
            while data := await up_reader.read(65536):
                if not cut["done"] or b"EVALSHA" not in seen:
                    writer.write(data)
                    await writer.drain()

        seen = bytearray()
        task = asyncio.get_running_loop().create_task(down())
        try:
            while data := await reader.read(65536):
                seen += data
                up_writer.write(data)
                await up_writer.drain()
                if b"EVALSHA" in data and not cut["done"]:
                    cut["done"] = True
                    await asyncio.sleep(0.2)  # Redis has run it; its answer never comes back
                    writer.transport.abort()
                    break
        finally:
            task.cancel()
            up_writer.close()

    from voice2fa_middleware._stores.redis_scripts import HIT

    direct = Redis.from_url(server.url)
    await direct.script_load(HIT)  # so that Redis runs the script (no NOSCRIPT answer)
    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    prefix = f"lost{time.time_ns()}:"
    store = RedisStore(f"redis://127.0.0.1:{proxy_port}/0", key_prefix=prefix, timeout=2)
    with pytest.raises(StoreError):
        await store.hit("k", 60, time.time())
    try:
        assert int(await direct.get(f"{prefix}n:k") or 0) == 1  # ran once, not again
        assert len(connections) == 1  # no reconnection to send it again
    finally:
        await direct.aclose()
        await store.aclose()
        proxy.close()

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voice2fa_middleware import (
    AuditEvent,
    Identity,
    MemoryStore,
    ProtectedPath,
    Store,
    Voice2FAMiddleware,
    Voice2FASettings,
    require_voice_2fa,
)
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later

ROOT = Path(__file__).resolve().parent.parent


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a CI runner's stop, ``kill``) ends the run as Ctrl-C does: pytest then stops the
    servers the tests started, which run in sessions of their own and would outlive it."""
    raise KeyboardInterrupt


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _terminated)
SECRET = "test-secret-key-0123456789abcdef"

PHONES = {
    "alice": "+12025550143",
    "bob": "+12025550144",
    "carol": "+12025550145",
    "premium": "+19005551234",
    "foreign": "+33612345678",
    "bogus": "+1555123",
}


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as uvicorn does."""
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# -- redis-server, started by the tests ------------------------------------------------------


class RedisServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = port_for_later()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="voice2fa-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches pytest only, which then stops the server
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (apt-get install redis-server)")
        pytest.skip(
            "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server) to run the Redis tests"
        )
    server = RedisServer(binary)
    server.start()
    yield server
    server.stop()


def make_store(kind: str, request: pytest.FixtureRequest, clock: Callable[[], float] = time.time) -> Store:
    if kind == "memory":
        return MemoryStore(clock=clock)
    from voice2fa_middleware import RedisStore

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    if kind == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return RedisStore(cluster_url(cluster.url), key_prefix=prefix)  # type: ignore[no-any-return]
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisStore(server.url, key_prefix=prefix)  # type: ignore[no-any-return]


def cluster_url(url: str) -> str:
    """Our URL for a cluster, from a node's ``redis://host:port/0``."""
    return "redis+cluster://" + url.split("://", 1)[1].rsplit("/", 1)[0]


# -- an app under test, on a real uvicorn server -------------------------------------------------


@dataclass
class Harness:
    """A protected app on loopback, wired to a SignalWire double."""

    server: LiveServer
    double: SignalWireDouble
    middleware_kwargs: dict[str, Any]
    events: list[AuditEvent] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, user: str | None = "alice", **kwargs: Any) -> httpx.Client:
        cookies = {"test_user": user} if user else {}
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=20, **kwargs)

    def challenge(self, client: httpx.Client, path: str = "/account") -> tuple[str, str]:
        """Open a protected page, follow to the verify page; returns (csrf token, spoken code)."""
        before = len(self.double.calls)
        r = client.get(path)
        assert r.status_code == 303, r.text
        assert r.headers["location"].startswith("/voice2fa/verify?next=")
        page = client.get(r.headers["location"])
        assert page.status_code == 200, page.text
        self.double.wait_for_calls(before + 1)
        code = self.double.calls[-1].code()
        assert code is not None
        return csrf_of(page.text), code

    def verify(
        self, client: httpx.Client, code: str, csrf: str, next_url: str = "/account", **extra: str
    ) -> httpx.Response:
        return client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf, "next": next_url, **extra})


def submit_concurrently(url: str, cookies: dict[str, str], form: dict[str, str], count: int) -> list[int]:
    """POST the same verify form from ``count`` threads released together; the statuses."""
    results: list[int] = []
    barrier = threading.Barrier(count)

    def submit() -> None:
        with httpx.Client(base_url=url, cookies=cookies, timeout=30) as client:
            barrier.wait()
            results.append(client.post("/voice2fa/verify", data=form).status_code)

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def example_env(double: SignalWireDouble, port: int, redis_url: str | None = None) -> dict[str, str]:
    """An example app's environment: the double as SignalWire, webhooks to ``port``, and
    Redis as the store when ``redis_url`` is given."""
    env = {**double.env(public_url=f"http://127.0.0.1:{port}"), "VOICE2FA_SECRET_KEY": SECRET}
    return {**env, "VOICE2FA_REDIS_URL": redis_url} if redis_url else env


def wrong_for(code: str) -> str:
    """A code of the same length that is not ``code``."""
    return "9" * len(code) if code != "9" * len(code) else "8" * len(code)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def identify(conn: HTTPConnection) -> Identity | None:
    user = conn.cookies.get("test_user")
    if user not in PHONES:
        return None
    # test_phone: the account's phone changed (S23); test_version: the app revoked proofs.
    phone = conn.cookies.get("test_phone", PHONES[user])
    return Identity(user, phone, conn.cookies.get("test_version", ""))


async def account(request: Request) -> Response:
    return PlainTextResponse("account: secret page")


async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie("test_user")
    return response


async def page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>page</title><p>a protected page")


async def public(request: Request) -> Response:
    return PlainTextResponse("public page")


async def pay(request: Request) -> Response:
    return PlainTextResponse("payments: step-up page")


@require_voice_2fa
async def decorated(request: Request) -> Response:
    return PlainTextResponse("decorated: secret page")


@require_voice_2fa
def decorated_sync(request: Request) -> Response:
    return PlainTextResponse("decorated sync: secret page")


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("ws: secret")
    await websocket.close()


def build_app(**middleware_kwargs: Any) -> Starlette:
    routes = [
        Route("/", public),
        Route("/account", account),
        Route("/account/{rest:path}", account),
        Route("/pay", pay),
        Route("/page", page),
        Route("/admin", account),
        Route("/admin/{rest:path}", account),
        Route("/logout", sign_out, methods=["POST"]),
        Route("/decorated", decorated),
        Route("/decorated-sync", decorated_sync),
        WebSocketRoute("/ws/secret", ws_endpoint),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Voice2FAMiddleware, **middleware_kwargs)
    return app


@pytest.fixture
def harness_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Harness]]:
    started: list[tuple[LiveServer, SignalWireDouble]] = []

    def make(
        *,
        store: str | Store = "memory",
        double: SignalWireDouble | None = None,
        caller: Any = None,
        middleware: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Harness:
        double = double or SignalWireDouble().start()
        port = port_for_later()
        clock = FakeClock()
        events: list[AuditEvent] = []
        env = double.env(public_url=f"http://127.0.0.1:{port}")
        # Calls are not paced unless a test asks (tests/test_call_fidelity.py does): the other
        # tests place calls back to back, and one per second would only slow them down.
        settings.setdefault("calls_per_second", 0)
        config = Voice2FASettings.from_env(env, env_file=None, secret_key=SECRET, **settings)
        the_store = make_store(store, request, clock) if isinstance(store, str) else store
        kwargs: dict[str, Any] = dict(
            identify=identify,
            protect=["/account", "/page", "/admin/*", ProtectedPath("/pay", fresh_within=60)],
            settings=config,
            store=the_store,
            on_event=events.append,
            clock=clock,
        )
        if caller is not None:
            kwargs["caller"] = caller
        kwargs.update(middleware or {})
        server = LiveServer(build_app(**kwargs), port=port).start()
        started.append((server, double))
        return Harness(server=server, double=double, middleware_kwargs=kwargs, events=events, clock=clock)

    yield make
    for server, double in started:
        server.stop()
        double.stop()


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory()


class RecordingCaller:
    """A caller that places nothing: the test plays the carrier by hand."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        self.calls.append({"to": to, "from": from_, "url": laml_url, "status": status_url})
        return f"CA-test-{len(self.calls)}"


# -- the examples, run by uvicorn as a user would ---------------------------------------------


class ServerProcess:
    """An ASGI server in its own process, as a user runs it; ready once ``/`` answers 200."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        # A session of its own: Ctrl-C reaches pytest only, which then stops the server.
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[2]} exited:\n" + self.output())
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{cmd[2]} did not answer:\n" + self.output())

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


def uvicorn_command(
    target: str, port: int, workers: int = 1, extra_args: Sequence[str] = (), server: str = "uvicorn"
) -> list[str]:
    """The command line that serves ``target`` on ``port`` with ``server``."""
    host = "127.0.0.1"
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", target, "--bind", f"{host}:{port}", *extra_args]
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--host", host, "--port", str(port), target]
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), target]
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", host, "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return [*cmd, *extra_args]


@pytest.fixture
def uvicorn_factory() -> Iterator[Callable[..., ServerProcess]]:
    """``start(target, env, port=None, workers=1, extra_args=(), server="uvicorn")``."""
    procs: list[ServerProcess] = []

    def start(
        target: str,
        env: dict[str, str],
        *,
        port: int | None = None,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        server: str = "uvicorn",
    ) -> ServerProcess:
        port = port or port_for_later()
        proc = ServerProcess(uvicorn_command(target, port, workers, extra_args, server), env, port)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


# -- Redis Cluster and Sentinel ------------------------------------------------------------------
# Real deployments from tests/redis_servers.py, one of each per session. Tests that fail the
# sentinel master over should start a RedisSentinelSet of their own (see test_redis_servers.py).

from .redis_servers import RedisClusterServers, RedisSentinelSet  # noqa: E402


def _redis_binaries(what: str, packages: dict[str, str]) -> dict[str, str]:
    """``{binary: path}``; skips the test (fails it under CI) when one is missing."""
    found = {name: shutil.which(name) for name in packages}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        install = "apt-get install " + " ".join(dict.fromkeys(packages[name] for name in missing))
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} required in CI for {what} ({install})")
        pytest.skip(f"{', '.join(missing)} not found: install (Debian/Ubuntu: {install}) to run the {what} tests")
    return {name: path for name, path in found.items() if path is not None}


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three cluster masters on loopback (no replicas); ``.url``, ``.startup_nodes``, ``.flushall()``."""
    found = _redis_binaries("Redis Cluster", {"redis-server": "redis-server", "redis-cli": "redis-tools"})
    cluster = RedisClusterServers(found["redis-server"], found["redis-cli"])
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    """A master, a replica and three sentinels (``mymaster``); ``.url``, ``.sentinels``."""
    found = _redis_binaries("Redis Sentinel", {"redis-server": "redis-server", "redis-sentinel": "redis-sentinel"})
    sentinel_set = RedisSentinelSet(found["redis-server"], found["redis-sentinel"])
    sentinel_set.start()
    try:
        yield sentinel_set
    finally:
        sentinel_set.stop()


# -- end of Redis Cluster and Sentinel -----------------------------------------------------------

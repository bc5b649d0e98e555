"""Pacing calls to the provider's limit: many users start a challenge at the same moment.

50 users (``--users``) open a protected page together, against the SignalWire double limited
to 5 calls per second (``--rate``; SignalWire's default is 1 per project, and 50 users at 1
per second would mean the last one waits ~50 s) and the middleware paced at the same rate
(``calls_per_second``), with a call deadline long enough for the last slot (``call_timeout`` =
users / rate + 2 s). Every user must get exactly one call, none a 5xx, and the circuit
breaker must stay closed. Ends with one line for tools::

    pacing: users=50 calls=50 five_xx=0 breaker=closed p99_wait_s=9.81

``p99_wait_s``: the 99th percentile of how long a user's request took (its wait for a slot,
and the Create Call). Run by ``nox -s bench`` after the overhead benchmark, or alone:
``python benchmarks/pacing.py [--users 50] [--rate 5] [--redis]`` (``--redis``: RedisStore
on a redis-server started here, as several workers would share it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice2fa_middleware import (  # noqa: E402
    AuditEvent,
    Identity,
    MemoryStore,
    Store,
    Voice2FAMiddleware,
    Voice2FASettings,
)
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"


async def identify(conn: HTTPConnection) -> Identity | None:
    user = conn.cookies.get("user", "")
    if not user.isdigit():
        return None
    return Identity(f"user{user}", f"+1202555{int(user) % 10000:04d}")


async def page(request: Request) -> Response:
    return PlainTextResponse("protected")


def redis_store() -> tuple[Store, subprocess.Popen[bytes]]:
    from voice2fa_middleware import RedisStore

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--redis needs redis-server")
    port = port_for_later()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tempfile.gettempdir()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return RedisStore(f"redis://127.0.0.1:{port}/0", key_prefix="pacing:"), proc


def run(users: int, rate: float, use_redis: bool) -> dict[str, Any]:
    events: list[AuditEvent] = []
    proc = None
    store: Store = MemoryStore()
    if use_redis:
        store, proc = redis_store()
    with SignalWireDouble(calls_per_second=rate) as double:
        port = port_for_later()
        settings = Voice2FASettings.from_env(
            double.env(public_url=f"http://127.0.0.1:{port}"),
            env_file=None,
            secret_key=SECRET,
            calls_per_second=rate,
            call_timeout=users / rate + 2.0,
            calls_per_client_per_hour=10 * users,  # every user is on loopback here
        )
        app = Starlette(routes=[Route("/account", page)])
        app.add_middleware(
            Voice2FAMiddleware,
            identify=identify,
            protect=["/account"],
            settings=settings,
            store=store,
            on_event=events.append,
        )
        with LiveServer(app, port=port) as server:
            results: list[tuple[int, float]] = []
            barrier = threading.Barrier(users)

            def one(n: int) -> None:
                with httpx.Client(base_url=server.url, cookies={"user": str(n)}, timeout=120) as client:
                    barrier.wait()
                    began = time.monotonic()
                    status = client.get("/account", headers={"accept": "application/json"}).status_code
                    results.append((status, time.monotonic() - began))

            threads = [threading.Thread(target=one, args=(n,)) for n in range(users)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            double.wait_for_calls(users, timeout=60)
            called = [c.to for c in double.calls]
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)
    waits = sorted(took for _status, took in results)
    opened = [e for e in events if e.kind == "provider_circuit" and e.detail.get("state") != "closed"]
    return {
        "users": users,
        "calls": len(called),
        "one_each": len(set(called)) == users == len(called),
        "five_xx": sum(1 for status, _took in results if status >= 500),
        "breaker": "open" if opened else "closed",
        "p99_wait_s": waits[min(len(waits) - 1, int(0.99 * len(waits)))],
        "median_wait_s": statistics.median(waits),
        "provider_429": double.rejected.count(429),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="calls per second (the double's and ours)")
    parser.add_argument("--redis", action="store_true", help="RedisStore instead of MemoryStore")
    args = parser.parse_args()
    r = run(args.users, args.rate, args.redis)
    print(
        f"(rate={args.rate}/s, store={'redis' if args.redis else 'memory'}, median_wait_s={r['median_wait_s']:.2f}, "
        f"provider_429={r['provider_429']}, one call each={r['one_each']})"
    )
    print(
        f"pacing: users={r['users']} calls={r['calls']} five_xx={r['five_xx']} "
        f"breaker={r['breaker']} p99_wait_s={r['p99_wait_s']:.2f}"
    )
    if not r["one_each"] or r["five_xx"] or r["breaker"] != "closed":
        raise SystemExit(1)


if __name__ == "__main__":
    main()

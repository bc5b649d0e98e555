"""Microseconds per request, each configuration next to the bare app, in one process.

wrk over loopback (benchmarks/run.py) is the measurement the targets are about, but on a
shared host its figures move by a few per cent from one minute to the next: too much to see
what a change of a microsecond does. This drives uvicorn's own h11 protocol in one process,
without sockets, and alternates between the apps every few hundred requests, so a slow spell
falls on all of them alike. The figures are what uvicorn + Starlette + the middleware cost per
request, less the kernel's share.

Usage: python benchmarks/inprocess.py [--blocks 40] [--block 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uvicorn.config import Config  # noqa: E402
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from benchmarks.app import build  # noqa: E402
from benchmarks.run import session_cookie, verified_cookie  # noqa: E402


class _Transport(asyncio.Transport):
    """Takes what uvicorn writes; resolves ``done`` when a response body has gone out."""

    def __init__(self) -> None:
        super().__init__()
        self.done: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data).endswith(b"hello") and self.done is not None:
            self.done.set_result(None)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def request(path: str, cookie: str | None) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    return (head + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()


def driver(config: str, path: str, cookie: str | None) -> Callable[[int], Awaitable[None]]:
    """``drive(n)``: n requests, one after the other, through uvicorn's h11 protocol."""
    loop = asyncio.get_running_loop()
    uv = Config(app=build(config), log_level="error", access_log=False, lifespan="off")
    uv.load()
    protocol = H11Protocol(uv, ServerState(), {}, loop)
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    raw = request(path, cookie)

    async def drive(n: int) -> None:
        for _ in range(n):
            transport.done = loop.create_future()
            protocol.data_received(raw)
            await transport.done
            await asyncio.sleep(0)  # let uvicorn finish the cycle, as the event loop would

    return drive


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block", type=int, default=500, help="requests in a row to one app")
    args = parser.parse_args()
    app_cookie = "user=bench"
    cases = {
        "(a) bare app": ("bare", "/", app_cookie),
        "(a) bare app, no Cookie header": ("bare", "/", None),
        "(b) middleware, unprotected route": ("middleware", "/", app_cookie),
        "(c) middleware, verified cookie": (
            "middleware",
            "/protected",
            f"{app_cookie}; voice2fa_verified={verified_cookie()}",
        ),
        "(d) SessionMiddleware with a cookie": ("session", "/", f"session={session_cookie()}"),
    }
    drivers = {name: driver(*case) for name, case in cases.items()}
    for drive in drivers.values():  # warm up: caches filled, bytecode specialised
        await drive(2000)
    per_request: dict[str, list[float]] = {name: [] for name in drivers}
    for _ in range(args.blocks):
        for name, drive in drivers.items():
            start = time.perf_counter()
            await drive(args.block)
            per_request[name].append((time.perf_counter() - start) / args.block * 1e6)
    bare = per_request["(a) bare app"]
    print(f"{'configuration':42} {'us/req':>8} {'+us':>7}")
    for name, runs in per_request.items():
        extra = statistics.median(x - b for x, b in zip(runs, bare, strict=True))
        print(f"{name:42} {statistics.median(runs):8.2f} {extra:+7.2f}")


if __name__ == "__main__":
    asyncio.run(main())

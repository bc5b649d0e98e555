"""Machine instructions of the app's process per challenge started on RedisStore (valgrind).

Each request comes from a new user, so each one starts a challenge: the store's one step (a Lua
script on a real redis-server, started here on a free loopback port), the call to an instant
caller and the redirect, through the middleware's ASGI interface in one process. Instructions
are counted in the app's process only (not in redis-server), for 200 and for 600 challenges;
the difference over 400 is the cost of one, start-up left out. Like ``instructions.py`` this
shows what a change does to the client's work, where wrk's figures move with the host.

Usage: python benchmarks/challenge_instructions.py   (needs valgrind, setarch, redis-server)
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def drive(n: int) -> None:
    from benchmarks.app import build

    app = build("middleware")
    answers: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            answers.append(message["status"])

    async def one(i: int) -> None:
        cookie = f"user=u{i}-{time.time_ns()}".encode()  # a new user: a new challenge
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/protected",
            "raw_path": b"/protected",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie)],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)

    for i in range(100):  # warm up: connections made, scripts loaded, caches filled
        await one(i)
    for i in range(n):
        await one(100 + i)
    assert set(answers) == {303}, set(answers)


def instructions(n: int, redis_url: str) -> int:
    from benchmarks.instructions import valgrind_count

    return valgrind_count([__file__, "--drive", str(n)], {"BENCH_REDIS_URL": redis_url})


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    if sys.argv[1:2] == ["--drive"]:
        asyncio.run(drive(int(sys.argv[2])))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        per_challenge = (instructions(600, url) - instructions(200, url)) / 400
        print(f"challenge path on RedisStore: {per_challenge:,.0f} instructions per challenge (app process)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Machine instructions per request, each configuration next to the bare app (valgrind).

Timings move with the host; instruction counts do not (with a fixed hash seed and address
randomisation off they repeat exactly), so this shows what a change does to the work itself, to
a couple of thousand instructions. Each configuration runs in its own process under ``valgrind``
twice, for 500 and for 1,500 requests through uvicorn's h11 protocol (no sockets, as in
``inprocess.py``); the difference over 1,000 is the cost of one request, start-up left out.

Usage: python benchmarks/instructions.py   (needs valgrind and setarch; about a minute)
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {
    # name: (configuration, path, with the middleware's verified cookie besides the app's?)
    "(a) bare app": ("bare", "/", False),
    "(a) bare app, (c)'s request": ("bare", "/protected", True),
    "(b) middleware, unprotected route": ("middleware", "/", False),
    "(c) middleware, verified cookie": ("middleware", "/protected", True),
}


async def drive(name: str, n: int) -> None:
    from benchmarks.inprocess import driver
    from benchmarks.run import verified_cookie

    config, path, cookie = CASES[name]
    requests = driver(config, path, "user=bench" + (f"; voice2fa_verified={verified_cookie()}" if cookie else ""))
    await requests(200)  # warm up: caches filled, bytecode specialised
    # The objects made at start-up are left out of later garbage collections: otherwise when
    # a full collection happens to fall (which moves with any change to the code imported)
    # decides thousands of instructions a request. Collections of what requests make still count.
    gc.collect()
    gc.freeze()
    await requests(n)


def instructions(name: str, n: int) -> int:
    cmd = ["setarch", "-R", "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--drive", name, str(n)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    assert found, out
    return int(found.group(1).replace(",", ""))


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    if sys.argv[1:2] == ["--drive"]:
        asyncio.run(drive(sys.argv[2], int(sys.argv[3])))
        return
    per_request = {name: (instructions(name, 1500) - instructions(name, 500)) / 1000 for name in CASES}
    bare = per_request["(a) bare app"]
    print(f"{'configuration':42} {'instr/req':>10} {'+instr':>8} {'+%':>6}")
    for name, count in per_request.items():
        print(f"{name:42} {count:10.0f} {count - bare:+8.0f} {100 * (count - bare) / bare:+6.2f}")


if __name__ == "__main__":
    main()

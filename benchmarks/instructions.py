"""Machine instructions per request, each configuration next to the bare app (valgrind).

Timings move with the host; instruction counts do not (with a fixed hash seed and address
randomisation off they repeat exactly), so this shows what a change does to the work itself, to
a couple of thousand instructions. Each configuration runs in its own process under ``valgrind``
twice, for 500 and for 1,500 requests through uvicorn's h11 protocol (no sockets, as in
``inprocess.py``); the difference over 1,000 is the cost of one request, start-up left out.

Where objects land in memory still moves the count: one more object made at start-up, by a
change nowhere near the request's path, has moved a row by 10,000 (a different probe count in
some hash table, a different collection). So each configuration runs at three heap layouts
(``PADDINGS``: that many objects made before the app) and the median is shown, with the
spread beside it: a difference smaller than the spread is not a change of the work.

Usage: python benchmarks/instructions.py   (needs valgrind and setarch; about eight minutes on a slow 2-core host)
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


PADDINGS = (0, 700, 2100)


async def drive(name: str, n: int) -> None:
    from benchmarks.inprocess import driver
    from benchmarks.run import verified_cookie

    # Objects of many sizes, kept alive: they move where the app's own objects land.
    padding = [bytearray(i % 512) for i in range(int(os.environ.get("BENCH_PADDING", "0")))]  # noqa: F841

    config, path, cookie = CASES[name]
    requests = driver(config, path, "user=bench" + (f"; voice2fa_verified={verified_cookie()}" if cookie else ""))
    await requests(200)  # warm up: caches filled, bytecode specialised
    # The objects made at start-up are left out of later garbage collections: otherwise when
    # a full collection happens to fall (which moves with any change to the code imported)
    # decides thousands of instructions a request. Collections of what requests make still count.
    gc.collect()
    gc.freeze()
    await requests(n)


def valgrind_count(argv: list[str], env: dict[str, str]) -> int:
    """Instructions a Python run of ``argv`` executes (fixed hash seed, no address randomisation)."""
    cmd = ["setarch", "-R", "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    env = {**os.environ, "PYTHONHASHSEED": "0", **env}
    out = subprocess.run([*cmd, sys.executable, *argv], capture_output=True, text=True, env=env, check=True).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    assert found, out
    return int(found.group(1).replace(",", ""))


def instructions(name: str, n: int, padding: int = 0) -> int:
    return valgrind_count([__file__, "--drive", name, str(n)], {"BENCH_PADDING": str(padding)})


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    if sys.argv[1:2] == ["--drive"]:
        asyncio.run(drive(sys.argv[2], int(sys.argv[3])))
        return
    layouts = {
        name: sorted((instructions(name, 1500, p) - instructions(name, 500, p)) / 1000 for p in PADDINGS)
        for name in CASES
    }
    per_request = {name: counts[len(counts) // 2] for name, counts in layouts.items()}
    bare = per_request["(a) bare app"]
    print(f"{'configuration':42} {'instr/req':>10} {'+instr':>8} {'+%':>6} {'spread':>7}")
    for name, count in per_request.items():
        spread = layouts[name][-1] - layouts[name][0]
        print(f"{name:42} {count:10.0f} {count - bare:+8.0f} {100 * (count - bare) / bare:+6.2f} {spread:7.0f}")


if __name__ == "__main__":
    main()

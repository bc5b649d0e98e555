"""Overhead of the middleware next to a bare app, with wrk over loopback, interleaved rounds.

Usage: python benchmarks/run.py [--rounds 5] [--duration 4] [--only abcdew] [--results FILE]
Prints a table and ends with one line for tools:
overhead: unprotected=R1 verified=R2 session_middleware=R3 loop_p99_ratio=R4 redis_challenge=R5 workers2_vs_bare=R6

(e) starts a new challenge on every request (a new user each time: create, call, redirect);
(w) runs the bare app and the middleware on RedisStore (verified path) with one uvicorn
worker and with two (uvicorn servers with a socket each on one port, see reuseport.py), to
show that the middleware adds no serialisation between workers: workers2_vs_bare is the
middleware's 2-worker/1-worker gain over the bare app's, with a 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice2fa_middleware.testing import port_for_later  # noqa: E402

# With two cores or more, the server and wrk each get a core of their own (taskset), so they
# do not take turns on one and the scheduler does not move them about: steadier figures.
PIN = bool(shutil.which("taskset")) and len(os.sched_getaffinity(0)) >= 2
SERVER_CPU, WRK_CPU = (max(os.sched_getaffinity(0)), min(os.sched_getaffinity(0))) if PIN else (0, 0)
WORKER_CPUS = [SERVER_CPU, *sorted(os.sched_getaffinity(0) - {SERVER_CPU})] if PIN else [0]


def pinned(cmd: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if PIN else cmd


class Server:
    def __init__(self, config: str, env: dict[str, str] | None = None, workers: int = 0) -> None:
        self.port = port_for_later()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "BENCH_CONFIG": config, **(env or {})}
        if workers:
            # (w): N uvicorn servers, a socket each on one port (see reuseport.py for why not
            # uvicorn --workers), the first on the server's core, the next on wrk's, and so on.
            command = [sys.executable, "-m", "benchmarks.reuseport", "benchmarks.app:app", str(self.port)]
            self.procs = [
                subprocess.Popen(pinned(command, WORKER_CPUS[n % len(WORKER_CPUS)]), cwd=ROOT, env=environment)
                for n in range(workers)
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.app:app",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--no-access-log",
            ]
            self.procs = [subprocess.Popen(pinned(command, SERVER_CPU), cwd=ROOT, env=environment)]
        for _ in range(200):
            try:
                httpx.get(self.url + "/", timeout=0.5)
                time.sleep(1.0 if workers > 1 else 0)  # the others bind their sockets too
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{config} did not start")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)


# A new signed-in user on every request: each one starts a challenge of its own.
NEW_USERS = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, {["Cookie"] = "user=%s-" .. counter})
end
"""


def wrk(
    url: str,
    duration: int,
    headers: dict[str, str] | None = None,
    connections: int = 32,
    new_users: bool = False,
) -> tuple[float, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if new_users:
        script = Path(tempfile.mkdtemp()) / "new_users.lua"
        script.write_text(NEW_USERS % uuid.uuid4().hex[:12])
        cmd += ["-s", str(script)]
    out = subprocess.run(pinned([*cmd, url], WRK_CPU), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def verified_cookie() -> str:
    """The middleware's proof for the benchmark's signed-in user, as verifying would set it."""
    from benchmarks.app import settings
    from voice2fa_middleware import Identity
    from voice2fa_middleware._core.crypto import Keyring

    return Keyring(settings().secret_keys).sign_proof("verified", Identity("bench", "+12025550143"))


def session_cookie() -> str:
    """A session cookie as Starlette's SessionMiddleware signs it, holding the signed-in user."""
    from itsdangerous import TimestampSigner

    from benchmarks.app import SECRET

    data = base64.b64encode(json.dumps({"user": "bench"}).encode())
    return TimestampSigner(SECRET).sign(data).decode()


def start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port = port_for_later()
    # On wrk's core, as wrk: the app's core is the app's alone (in production Redis runs on
    # a host of its own), so (e) shows what the app does per challenge, not who got the core.
    proc = subprocess.Popen(
        pinned([binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tempfile.mkdtemp()], WRK_CPU),
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def loop_block(rounds: int) -> tuple[float, float]:
    """p99 of unrelated requests with no challenge in flight, then while 100 challenges are
    in flight (each waiting 2 s for the provider to answer Create Call). wrk runs for 1 s
    inside that window, once per round; the medians are returned."""
    server = Server("middleware", {"BENCH_PROVIDER_DELAY": "2"})
    quiet: list[float] = []
    busy: list[float] = []

    async def start_100(tag: int) -> None:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
            await asyncio.gather(*(c.get("/protected", headers={"cookie": f"user=r{tag}-{i}"}) for i in range(100)))

    try:
        for n in range(rounds):
            quiet.append(wrk(server.url + "/", 1, connections=8)[1])
            flood = threading.Thread(target=lambda n=n: asyncio.run(start_100(n)))
            flood.start()
            time.sleep(0.5)  # all 100 are now waiting on the provider
            busy.append(wrk(server.url + "/", 1, connections=8)[1])
            flood.join()
        return statistics.median(quiet), statistics.median(busy)
    finally:
        server.stop()


def memory_for(n: int) -> float:
    """Resident memory (MiB) that n pending challenges add to a MemoryStore."""
    code = f"""
import asyncio, resource, time
from voice2fa_middleware import MemoryStore, Challenge
async def main():
    s = MemoryStore(max_challenges={n})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    now = time.time()
    for i in range({n}):
        await s.create(Challenge(id=f"c{{i:020d}}", user_tag="u"*32, phone="+12025550143", code_mac="m"*64,
                                 code="123456", created_at=now, expires_at=now + 300, call_nonce="n"*16))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
asyncio.run(main())
"""
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    )


def workers(rounds: int, duration: int, redis_url: str, cookie: str) -> tuple[float, float, float, float, float]:
    """The verified path with 2 uvicorn workers against 1, for the bare app and for the
    middleware on RedisStore: each one's gain (mean req/s with 2 workers over mean with 1) and
    the middleware's gain over the bare app's, with a 95% bootstrap interval over rounds.

    The four servers run side by side and wrk visits each in turn every round, in the reverse
    order every other round. One worker has the server's core to itself; two have both cores
    (the second shares wrk's, of which wrk takes a fifth or so). This host's cores slow down by
    up to half for a second or so at a time, unannounced (no steal time shows), so one 4 s
    figure says little: many short rounds, and the interval says how far to trust the figure."""
    headers = {"Cookie": f"user=bench; voice2fa_verified={cookie}"}
    configs = (("bare", 1), ("bare", 2), ("middleware", 1), ("middleware", 2))
    servers: dict[tuple[str, int], Server] = {}
    rps: dict[tuple[str, int], list[float]] = {key: [] for key in configs}
    try:
        for config, count in configs:
            server = servers[config, count] = Server(config, {"BENCH_REDIS_URL": redis_url}, workers=count)
            if config == "middleware":
                check = httpx.get(server.url + "/protected", headers=headers)
                assert check.status_code == 200 and "set-cookie" not in check.headers, check
            wrk(server.url + "/protected", 1, headers)  # warm-up: every worker started and answering
        for n in range(rounds):
            for key in configs if n % 2 == 0 else configs[::-1]:
                rps[key].append(wrk(servers[key].url + "/protected", duration, headers)[0])
    finally:
        for server in servers.values():
            server.stop()

    def gains(picks: list[int]) -> tuple[float, float, float]:
        mean = {key: statistics.fmean(rps[key][i] for i in picks) for key in configs}
        bare, middleware = mean["bare", 2] / mean["bare", 1], mean["middleware", 2] / mean["middleware", 1]
        return bare, middleware, middleware / bare

    bare, middleware, relative = gains(list(range(rounds)))
    draw = random.Random(0)
    resampled = sorted(gains(draw.choices(range(rounds), k=rounds))[2] for _ in range(2000))
    tail = len(resampled) // 40  # 2.5 % at each end
    return bare, middleware, relative, resampled[tail], resampled[-tail - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--only", default="abcdew", help="configurations to run, by letter (default: abcdew)")
    parser.add_argument("--results", help="also write the report, as a Markdown code block, to this file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    cookie = verified_cookie()
    redis = start_redis()
    cases: dict[str, tuple[str, str, dict[str, str], dict[str, str]]] = {
        # Every request carries the app's own sign-in cookie ("user"), as a signed-in user's
        # requests do with or without the middleware; (c) adds the middleware's cookie to it.
        "(a) bare app": ("bare", "/", {"Cookie": "user=bench"}, {}),
        "(b) middleware, unprotected route": ("middleware", "/", {"Cookie": "user=bench"}, {}),
        "(c) middleware, verified cookie": (
            "middleware",
            "/protected",
            {"Cookie": f"user=bench; voice2fa_verified={cookie}"},
            {},
        ),
        # The session cookie stands for the app's sign-in cookie here.
        "(d) SessionMiddleware with a cookie": ("session", "/session", {"Cookie": f"session={session_cookie()}"}, {}),
        # (e): a new user on every request (wrk's script sets the cookie), so each request
        # starts a challenge: the store's step, the (instant) call, the redirect.
        "(e) challenge path, MemoryStore": ("middleware", "/protected", {}, {}),
    }
    if redis:
        cases["(e) challenge path, RedisStore"] = ("middleware", "/protected", {}, {"BENCH_REDIS_URL": redis[1]})
    cases = {name: case for name, case in cases.items() if name[1] in args.only or name.startswith("(a)")}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    try:
        for _round in range(args.rounds):
            for name, (config, path, headers, env) in cases.items():
                server = Server(config, env)
                try:
                    if (
                        config == "middleware"
                        and path == "/protected"
                        and "voice2fa_verified" in headers.get("Cookie", "")
                    ):
                        check = httpx.get(server.url + path, headers=headers)
                        assert check.status_code == 200 and "set-cookie" not in check.headers, check
                    if name.startswith("(e)"):
                        check = httpx.get(server.url + path, headers={"Cookie": "user=check"})
                        assert check.status_code == 303 and "/voice2fa/verify" in check.headers["location"], check
                    results[name].append(
                        wrk(server.url + path, args.duration, headers, new_users=name.startswith("(e)"))
                    )
                finally:
                    server.stop()
        full = set("abcdew") <= set(args.only)
        quiet, busy = loop_block(max(args.rounds, 3)) if full else (1.0, 1.0)
        mem = memory_for(100_000) if full else 0.0
        # (w): many short rounds (see workers()): 8 per round of the others, of half the time.
        w_rounds, w_duration = 8 * args.rounds, max(1, args.duration // 2)
        gains = workers(w_rounds, w_duration, redis[1], cookie) if redis and "w" in args.only else None
    finally:
        if redis:
            redis[0].terminate()
    bare_runs = [r for r, _ in results["(a) bare app"]]
    lines = [f"{'configuration':42} {'req/s':>10} {'p99 ms':>8} {'ratio':>6}"]
    ratios: dict[str, float] = {}
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        # Each round's figure over the bare app's in the same round, then the median: a slow
        # spell on a shared host moves both figures of a round, not the ratio.
        ratios[name] = statistics.median(r / b for (r, _), b in zip(runs, bare_runs, strict=True))
        unit = "challenges/s" if name.startswith("(e)") else ""
        lines.append(f"{name:42} {rps:10.0f} {p99:8.2f} {ratios[name]:6.2f} {unit}".rstrip())
    if gains is not None:
        lines.append(
            f"workers: 2 uvicorn workers over 1, verified path: bare app x{gains[0]:.2f}, "
            f"middleware on RedisStore x{gains[1]:.2f}; workers2_vs_bare={gains[2]:.3f} "
            f"(95% interval {gains[3]:.3f}-{gains[4]:.3f}; {w_rounds} rounds of {w_duration}s)"
        )
    if not full:
        print("\n".join(lines))
        return
    lines += [
        "",
        f"loop: unrelated p99 {quiet:.2f} ms idle, {busy:.2f} ms with 100 challenges in flight (provider 2 s)",
        f"memory: {mem:.0f} MiB resident for 100,000 pending challenges in MemoryStore",
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{args.rounds} interleaved rounds of {args.duration}s, wrk -t1 -c32, one uvicorn worker (h11)"
        + (f", server on cpu {SERVER_CPU} and wrk on cpu {WRK_CPU}" if PIN else ""),
        f"overhead: unprotected={ratios['(b) middleware, unprotected route']:.3f} "
        f"verified={ratios['(c) middleware, verified cookie']:.3f} "
        f"session_middleware={ratios['(d) SessionMiddleware with a cookie']:.3f} loop_p99_ratio={busy / quiet:.2f}"
        + (f" redis_challenge={ratios['(e) challenge path, RedisStore']:.3f}" if redis else "")
        + (f" workers2_vs_bare={gains[2]:.3f}" if gains else ""),
    ]
    if args.results:
        Path(args.results).write_text("```\n" + "\n".join(lines) + "\n```\n")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

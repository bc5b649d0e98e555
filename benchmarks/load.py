"""Load-and-fault run (``nox -s load``) and soak (``nox -s soak``) of the whole flow, over loopback.

Starts a redis-server (a free port, its own temp dir, no persistence), the SignalWire test
double (in this process, on a thread: it takes Create Call, fetches the LaML with signed
requests, hears the code in ``<Say>``, posts the status callbacks) and two uvicorn workers
(``benchmarks.reuseport``: a socket each on one port) serving ``benchmarks/load_app.py``.

Load (default): three runs of N users each (``--users`` or LOAD_USERS, default 300), every
user new and doing the JSON flow with an httpx.AsyncClient of its own: sign in, GET
/protected (401 JSON, a call placed), wait for the double to have heard the code of that
challenge, POST it to verify_url, GET /protected again (200). One user in ten posts a wrong
code first, one in ten another user's code first: both must be refused (400).

1. ``baseline``: all N start at once, no fault;
2. ``redis``: starts spread over 6 s; 2 s in, redis-server is killed (SIGKILL) and
   restarted on the same port 3 s later (empty: no persistence);
3. ``provider``: starts spread over 6 s; 2 s in, the double answers Create Call with 500
   for 10 s.

A user acts on a clear failure (a 4xx the flow explains: 400 no_challenge/invalid_code for a
challenge that is gone, 429 or 503 with Retry-After): it waits Retry-After (at most 35 s)
and goes on: a new challenge when the old one is gone, another call when no code came.
Anything else is an unclear failure (another 5xx, a 502 among them, a timeout, a status the
flow does not expect); the user tries again a second later. Every user has at most 40 steps
and 150 s.

Prints one line (the figures summed over the three runs, latency from the baseline run):
load: users=N completed=.. clear_failures=.. unclear_failures=.. wrong_grants=.. duplicate_calls=..
p50_s=.. p99_s=.. redis_restart_unclear=.. provider_outage_unclear=..
and, on stderr, each run's figures, the statuses seen and the workers' log lines by kind.
Exits 1 when wrong_grants > 0.

Soak (``--soak``): the same servers, new users starting the flow at a fixed rate (SOAK_RATE
per second, default 3) for SOAK_SECONDS (default 300); prints
soak: rss_mb_start=.. rss_mb_mid=.. rss_mb_end=.. redis_used_memory_start=.. (bytes) ..
dbsize_start=.. dbsize_mid=.. dbsize_end=.. flows=..
(the workers' VmRSS summed; Redis INFO used_memory and DBSIZE).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice2fa_middleware._core.crypto import Keyring  # noqa: E402
from voice2fa_middleware.testing import SignalWireDouble, SimulatedCall, port_for_later  # noqa: E402

SECRET = "load-benchmark-secret-key-0123456789abcdef"
WORKERS = 2
REQUEST_TIMEOUT = 30.0  # longer than this is a hang
FLOW_SECONDS = 150.0  # a user gives up after this
MAX_STEPS = 40  # requests (and waits) per user
LISTEN_SECONDS = 60.0  # how long a user waits for the call to end before asking for another
MAX_WAIT = 35.0  # the longest Retry-After a user waits; more is a budget, not a fault
PENDING_COOKIE = "voice2fa_pending"
KEYS = Keyring([SECRET])


def phone_of(index: int) -> str:
    """As ``benchmarks.load_app.phone_of`` (not imported: importing the app builds it)."""
    return f"+1202555{index % 10_000:04d}"


def die_with_parent() -> None:
    """In a child, before exec: SIGKILL when the driver dies (Linux), so nothing outlives a run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the servers ---------------------------------------------------------------------------------


class Double(SignalWireDouble):
    """The SignalWire double, with an outage (Create Call answers 500 from one time to another)
    and two control routes for the driver: ``GET /control/calls?since=N`` (the calls that have
    ended, in the order they ended) and ``POST /control/outage?start=UNIX_TIME&seconds=S``."""

    outage = (0.0, 0.0)  # from, until (Unix time: the driver sets it ahead, whatever this loop's backlog)

    def __init__(self, port: int) -> None:
        super().__init__(port=port)
        # The carrier's client: more connections than httpx's 100 and more patience than 10 s,
        # so a few hundred calls at once are not the double's own queue.
        self._client = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=1000))
        self.ended: list[SimulatedCall] = []
        self.app.add_route("/control/calls", self._ended_calls, methods=["GET"])
        self.app.add_route("/control/outage", self._outage, methods=["POST"])

    async def _create_call(self, request: Request) -> Response:
        if self.outage[0] <= time.time() < self.outage[1]:
            self.rejected.append(500)
            return JSONResponse({"code": "21210", "message": "Internal error", "status": 500}, status_code=500)
        return await super()._create_call(request)

    async def _carry(self, call: SimulatedCall) -> None:
        try:
            await super()._carry(call)
        finally:
            self.ended.append(call)

    async def _ended_calls(self, request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        calls = [
            {"url": c.url, "code": c.code(6), "laml": c.laml_status_codes, "status": c.status_callback_codes}
            for c in self.ended[since : since + 2000]
        ]
        return JSONResponse(calls)

    async def _outage(self, request: Request) -> Response:
        start = float(request.query_params["start"])
        self.outage = (start, start + float(request.query_params.get("seconds", "10")))
        return JSONResponse({"outage": True})


def serve_double(port: int, seconds: float) -> None:
    """The double as a process of its own (the driver's event loop is busy with the users)."""
    with Double(port):
        time.sleep(seconds)  # the driver terminates it long before


class DoubleProcess:
    def __init__(self) -> None:
        self.port = port_for_later()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, str(Path(__file__)), "--serve-double", str(self.port)]
        self.proc = subprocess.Popen(command, cwd=ROOT, preexec_fn=die_with_parent)
        for _ in range(300):
            try:
                httpx.get(self.url + "/control/calls?since=999999", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the SignalWire double did not start")

    def env(self, public_url: str) -> dict[str, str]:
        defaults = SignalWireDouble.__init__.__kwdefaults__ or {}  # the double's credentials
        return {
            "SIGNALWIRE_SPACE": self.url,
            "SIGNALWIRE_PROJECT": defaults["project"],
            "SIGNALWIRE_TOKEN": defaults["token"],
            "SIGNALWIRE_NUMBER": defaults["from_number"],
            "SIGNALWIRE_SIGNING_KEY": defaults["signing_key"],
            "VOICE2FA_PUBLIC_URL": public_url,
        }

    def outage(self, start: float, seconds: float) -> None:
        httpx.post(self.url + "/control/outage", params={"start": start, "seconds": seconds}, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = port_for_later()
        self.dir = tempfile.mkdtemp(prefix="load-redis-")
        self.cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.cmd += ["--dir", self.dir]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stats(self) -> tuple[int, int]:
        client = redis.Redis(port=self.port, socket_timeout=5)
        return int(client.info("memory")["used_memory"]), int(client.dbsize())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Workers:
    """Two uvicorn servers with a socket each on one port (SO_REUSEPORT), as in run.py (w)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.logdir = Path(tempfile.mkdtemp(prefix="load-workers-"))
        command = [sys.executable, "-m", "benchmarks.reuseport", "benchmarks.load_app:app", str(port)]
        self.procs = []
        for n in range(WORKERS):
            with open(self.logdir / f"worker{n}.log", "wb") as out:
                environment = {**os.environ, **env}
                self.procs.append(
                    subprocess.Popen(command, cwd=ROOT, env=environment, stderr=out, preexec_fn=die_with_parent)
                )
        for _ in range(300):
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    time.sleep(1.0)  # the other one binds its socket too
                    return
            except httpx.HTTPError:
                pass
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the workers did not start: " + self.log_text()[-2000:])

    def rss_mb(self) -> float:
        total = 0
        for proc in self.procs:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logdir.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.logdir, ignore_errors=True)


# -- what the double heard ------------------------------------------------------------------------


@dataclass
class Heard:
    """A call that has ended, as the double tells it."""

    code: str | None
    webhook_codes: list[tuple[str, int]]


class CallIndex:
    """The calls that ended, by challenge id (read from the signed token in each LaML URL),
    fetched from the double by one poller every 0.1 s."""

    def __init__(self, double_url: str) -> None:
        self.url = double_url + "/control/calls"
        self.seen = 0
        self.by_challenge: dict[str, list[Heard]] = collections.defaultdict(list)

    async def poll(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(100_000):  # bounded: 0.1 s apart, about three hours
                if stop.is_set():
                    return
                try:
                    calls = (await client.get(self.url, params={"since": self.seen})).json()
                except (httpx.HTTPError, ValueError):
                    calls = []
                self.seen += len(calls)
                for call in calls:
                    token = call["url"].rsplit("/laml/", 1)[-1]
                    payload = Keyring.load(KEYS.call, token, 3600)
                    cid = str(payload[0]) if isinstance(payload, list) and payload else "?"
                    codes = [("laml", n) for n in call["laml"]] + [("status", n) for n in call["status"]]
                    self.by_challenge[cid].append(Heard(call["code"], codes))
                if len(calls) < 2000:
                    await asyncio.sleep(0.1)

    def heard(self, cid: str, after: int) -> tuple[str | None, int]:
        """The code of the first call of challenge ``cid`` that ended after the first ``after``
        of them (``None``: none has, or it said no code), and how many have ended."""
        calls = self.by_challenge.get(cid, [])
        return (calls[after].code if len(calls) > after else None), len(calls)


# -- one user -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    completed: bool = False
    clear: int = 0
    unclear: int = 0
    wrong_grants: int = 0
    latency: float | None = None
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    budget_wait: bool = False  # a Retry-After longer than MAX_WAIT (an hourly budget)
    gave_up: str = ""
    decoy_refused: bool = False  # the wrong or other user's code was refused (400)


@dataclass
class Run:
    """What the users of one run share: the servers, the codes heard, the calls asked for."""

    url: str
    index: CallIndex
    heard: dict[str, str] = field(default_factory=dict)
    resends: collections.Counter[str] = field(default_factory=collections.Counter)
    challenges: set[str] = field(default_factory=set)


def wrong_code(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


async def someone_elses_code(run: Run, name: str, own: str) -> str:
    for _ in range(100):
        others = [c for u, c in run.heard.items() if u != name and c != own]
        if others:
            return random.choice(others[-20:])
        await asyncio.sleep(0.1)
    return wrong_code(own)  # nobody else heard one in 10 s: a wrong code all the same


async def user_flow(run: Run, index: int, mode: str) -> Outcome:
    """One user through the flow; ``mode``: "right", "wrong" (a wrong code first) or
    "other" (another user's code first)."""
    name = f"user{index}"
    out = Outcome()
    started = time.monotonic()
    deadline = started + FLOW_SECONDS
    headers = {"accept": "application/json"}
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them: else a
    # request sent as the server closes fails (RemoteProtocolError), a race of the client's.
    limits = httpx.Limits(max_connections=2, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=run.url, timeout=REQUEST_TIMEOUT, headers=headers, limits=limits) as c:

        async def send(method: str, url: str, **kw: Any) -> httpx.Response | None:
            try:
                r = await c.request(method, url, **kw)
            except httpx.HTTPError as exc:
                out.unclear += 1
                out.statuses[f"{method} {type(exc).__name__}"] += 1
                return None
            return r

        def refused(r: httpx.Response | None, what: str) -> float:
            """Count a response the step did not want; how long to wait before acting on it."""
            if r is None:
                return 1.0
            try:
                error = r.json().get("error", "")
            except ValueError:
                error = "not-json"
            out.statuses[f"{what} {r.status_code} {error}"] += 1
            retry_after = r.headers.get("retry-after")
            wait = float(retry_after) if retry_after and retry_after.replace(".", "").isdigit() else None
            clear = (r.status_code == 400 and error in ("no_challenge", "invalid_code")) or (
                r.status_code in (429, 503) and wait is not None
            )
            if not clear:
                out.unclear += 1
                return 1.0
            out.clear += 1
            if wait is not None and wait > MAX_WAIT:
                out.budget_wait = True
            return min(wait if wait is not None else 0.2, MAX_WAIT)

        r = await send("POST", "/login", params={"user": name})
        if r is None or r.status_code != 200:
            refused(r, "login")
            out.gave_up = "login"
            return out
        state, verified, decoy_done = "protect", False, mode == "right"
        cid = csrf = verify_url = resend_url = ""
        code: str | None = None
        listen_until = 0.0
        used: collections.Counter[str] = collections.Counter()  # calls of each challenge listened to
        for _step in range(MAX_STEPS):
            if time.monotonic() > deadline:
                break
            if state == "protect":
                r = await send("GET", "/protected")
                if r is not None and r.status_code == 200:
                    if verified:
                        out.completed, out.latency = True, time.monotonic() - started
                    else:
                        out.wrong_grants += 1
                        out.statuses["protected 200 before a right code"] += 1
                    return out
                body = r.json() if r is not None and r.status_code == 401 else {}
                if body.get("error") == "voice2fa_required":
                    pending = Keyring.load(KEYS.pending, c.cookies.get(PENDING_COOKIE), 3600)
                    cid = str(pending.get("c")) if isinstance(pending, dict) else "?"
                    run.challenges.add(cid)
                    csrf, verify_url, resend_url = body["csrf_token"], body["verify_url"], body["resend_url"]
                    state, listen_until, code = "listen", time.monotonic() + LISTEN_SECONDS, None
                    continue
                await asyncio.sleep(refused(r, "protected"))
            elif state == "listen":  # one step: until the next call of the challenge ends, or LISTEN_SECONDS
                heard, ended = run.index.heard(cid, used[cid])
                while ended <= used[cid] and time.monotonic() < min(listen_until, deadline):
                    await asyncio.sleep(0.1)
                    heard, ended = run.index.heard(cid, used[cid])
                if ended > used[cid]:
                    used[cid] += 1
                if heard:
                    code, state = heard, "verify"
                    run.heard[name] = heard
                else:
                    state = "resend"  # no code came (the call failed, or never rang)
            elif state == "resend":
                r = await send("POST", resend_url, json={"csrf_token": csrf})
                if r is not None and r.status_code == 202:
                    run.resends[cid] += 1
                    state, listen_until = "listen", time.monotonic() + LISTEN_SECONDS
                    continue
                wait = refused(r, "resend")
                if r is not None and r.status_code == 400:
                    state = "protect"  # the challenge is gone: a new one
                elif r is not None and r.status_code == 429 and wait >= MAX_WAIT:
                    # No more calls for this challenge: listen to those placed until it expires.
                    state, listen_until = "listen", time.monotonic() + LISTEN_SECONDS
                    continue
                await asyncio.sleep(wait)
            elif state == "verify":
                assert code is not None
                decoy = not decoy_done
                sent = code
                if decoy:
                    sent = wrong_code(code) if mode == "wrong" else await someone_elses_code(run, name, code)
                r = await send("POST", verify_url, json={"code": sent, "csrf_token": csrf})
                if r is not None and r.status_code == 200:
                    if decoy:
                        out.wrong_grants += 1
                        out.statuses[f"verify 200 for a {mode} code"] += 1
                    verified, state = True, "protect"
                    continue
                error = r.json().get("error") if r is not None and r.status_code == 400 else None
                if decoy and error == "invalid_code":
                    decoy_done = out.decoy_refused = True  # refused, as it must be
                    continue
                wait = refused(r, "verify")
                if error == "invalid_code" and r is not None and r.json().get("attempts_left", 0) > 0:
                    # The challenge is live and did not take the code heard: a later call's code
                    # replaced it (an earlier call ended after a resend); listen to the next.
                    out.statuses["verify 400 for the heard code of a live challenge"] += 1
                    state, listen_until = "listen", time.monotonic() + LISTEN_SECONDS
                elif error in ("invalid_code", "no_challenge"):
                    state = "protect"  # the challenge is gone: a new one
                await asyncio.sleep(wait)
        out.gave_up = state
        return out


# -- a run ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    name: str
    users: int
    outcomes: list[Outcome]
    duplicate_calls: int
    seconds: float
    webhook_errors: dict[str, int]

    def total(self, attr: str) -> int:
        return sum(int(getattr(o, attr)) for o in self.outcomes)

    def latencies(self) -> list[float]:
        return [o.latency for o in self.outcomes if o.latency is not None]


def mode_of(index: int) -> str:
    return {0: "wrong", 1: "other"}.get(index % 10, "right")


async def run_users(
    url: str, index: CallIndex, name: str, first: int, users: int, ramp: float, fault: Any = None
) -> Tally:
    run = Run(url, index)

    async def one(i: int) -> Outcome:
        await asyncio.sleep(ramp * i / users)
        return await user_flow(run, first + i, mode_of(i))

    started = time.monotonic()
    tasks = [asyncio.create_task(one(i)) for i in range(users)]
    fault_task = asyncio.create_task(fault()) if fault else None
    done, pending = await asyncio.wait(tasks, timeout=ramp + FLOW_SECONDS + 2 * REQUEST_TIMEOUT)
    for task in pending:
        task.cancel()
    outcomes = [
        t.result() if t in done and not t.exception() else Outcome(unclear=1, gave_up="cancelled") for t in tasks
    ]
    if fault_task is not None:
        await fault_task
    seconds = time.monotonic() - started
    await asyncio.sleep(3.0)  # calls still ringing
    duplicates = 0
    for cid in run.challenges:  # challenge ids are new in every run
        duplicates += max(0, len(index.by_challenge.get(cid, [])) - 1 - run.resends[cid])
    # Webhooks the app did not answer 2xx (the LaML fetch, status callbacks): each call of the run.
    calls = [c for cid in run.challenges for c in index.by_challenge.get(cid, [])]
    webhook_errors = collections.Counter(
        f"{kind} {code}" for c in calls for kind, code in c.webhook_codes if not 200 <= code < 300
    )
    return Tally(name, users, outcomes, duplicates, seconds, dict(webhook_errors))


def describe(t: Tally) -> str:
    lat = sorted(t.latencies())
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    refused = [o for o in t.outcomes if o.clear]
    statuses: collections.Counter[str] = collections.Counter()
    for o in t.outcomes:
        statuses.update(o.statuses)
    gave_up = collections.Counter(o.gave_up for o in t.outcomes if not o.completed)
    return (
        f"  {t.name}: users={t.users} completed={t.total('completed')} clear={t.total('clear')} "
        f"unclear={t.total('unclear')} wrong_grants={t.total('wrong_grants')} duplicate_calls={t.duplicate_calls} "
        f"p50_s={p50:.2f} p99_s={p99:.2f} run_s={t.seconds:.1f} "
        f"refused_users={len(refused)} refused_then_completed={sum(o.completed for o in refused)} "
        f"budget_waits={sum(o.budget_wait for o in t.outcomes)} decoys_refused={t.total('decoy_refused')} "
        f"not_completed={dict(gave_up)}\n"
        f"    statuses: {dict(statuses.most_common())}\n"
        f"    webhooks not answered 2xx: {t.webhook_errors}"
    )


def log_kinds(text: str) -> dict[str, int]:
    kinds: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if line.startswith(" ") or not line.strip():
            continue
        kinds[line.removeprefix("voice2fa: ")[:90]] += 1
    return dict(kinds.most_common(15))


class Servers:
    def __init__(self, users: int) -> None:
        self.redis = RedisServer()
        self.redis.start()
        try:
            self.double = DoubleProcess()
        except BaseException:
            self.redis.stop()
            raise
        port = port_for_later()
        env = {
            **self.double.env(public_url=f"http://127.0.0.1:{port}"),
            "VOICE2FA_REDIS_URL": self.redis.url,
            "VOICE2FA_SECRET_KEY": SECRET,
            "LOAD_USERS": str(users),
        }
        try:
            self.workers = Workers(env, port)
        except BaseException:
            self.double.stop()
            self.redis.stop()
            raise
        self.index = CallIndex(self.double.url)

    def stop(self) -> None:
        for stop in (self.workers.stop, self.double.stop, self.redis.stop):
            try:
                stop()
            except Exception as exc:
                log(f"stopping: {exc!r}")


def watchdog(seconds: float, servers: list[Servers]) -> None:
    """Stop everything and exit if the run outlasts ``seconds``: it must end by itself."""

    def fire() -> None:
        log(f"load: watchdog: still running after {seconds:.0f} s, stopping")
        for s in servers:
            s.stop()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


async def load(users: int, phases: str) -> int:
    servers = Servers(3 * users)
    watchdog(3 * (FLOW_SECONDS + 2 * REQUEST_TIMEOUT + 30), [servers])
    tallies: list[Tally] = []

    async def redis_fault() -> None:
        await asyncio.sleep(2.0)
        log("  redis: SIGKILL")
        servers.redis.kill()
        await asyncio.sleep(3.0)
        await asyncio.to_thread(servers.redis.start)
        log("  redis: restarted on the same port")

    async def provider_fault() -> None:
        start = time.time() + 2.0
        await asyncio.to_thread(servers.double.outage, start, 10.0)
        await asyncio.sleep(max(0.0, start - time.time()))
        log("  provider: Create Call answers 500 for 10 s")
        await asyncio.sleep(10.0)
        log("  provider: back")

    stop = asyncio.Event()
    poller = asyncio.create_task(servers.index.poll(stop))
    try:
        runs = [
            ("baseline", 0.0, None),
            ("redis", 6.0, redis_fault),
            ("provider", 6.0, provider_fault),
        ]
        for n, (name, ramp, fault) in enumerate(runs):
            if name not in phases:
                continue
            log(f"load: {name}: {users} users")
            tally = await run_users(servers.workers.url, servers.index, name, n * users, users, ramp, fault)
            tallies.append(tally)
            log(describe(tally))
        logs = servers.workers.log_text()
    finally:
        stop.set()
        await poller
        servers.stop()
    log(f"  worker log lines by kind: {log_kinds(logs)}")
    by_name = {t.name: t for t in tallies}
    lat = sorted((by_name.get("baseline") or tallies[0]).latencies())
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    wrong = sum(t.total("wrong_grants") for t in tallies)
    print(
        f"load: users={users} completed={sum(t.total('completed') for t in tallies)} "
        f"clear_failures={sum(t.total('clear') for t in tallies)} "
        f"unclear_failures={sum(t.total('unclear') for t in tallies)} wrong_grants={wrong} "
        f"duplicate_calls={sum(t.duplicate_calls for t in tallies)} p50_s={p50:.2f} p99_s={p99:.2f} "
        f"redis_restart_unclear={by_name['redis'].total('unclear') if 'redis' in by_name else 'na'} "
        f"provider_outage_unclear={by_name['provider'].total('unclear') if 'provider' in by_name else 'na'}",
        flush=True,
    )
    return 1 if wrong else 0


async def soak(seconds: float, rate: float) -> int:
    flows_max = int(seconds * rate) + 20
    servers = Servers(flows_max)
    watchdog(seconds + FLOW_SECONDS + 2 * REQUEST_TIMEOUT + 60, [servers])
    run = Run(servers.workers.url, servers.index)
    outcomes: list[Outcome] = []
    in_flight: set[asyncio.Task[Outcome]] = set()
    skipped = 0
    next_user = 0

    def launch() -> None:
        nonlocal next_user
        task = asyncio.create_task(user_flow(run, next_user, mode_of(next_user)))
        next_user += 1
        in_flight.add(task)
        task.add_done_callback(finished)

    def finished(task: asyncio.Task[Outcome]) -> None:
        in_flight.discard(task)
        failed = task.cancelled() or task.exception() is not None
        outcomes.append(Outcome(unclear=1, gave_up="crashed") if failed else task.result())

    def sample() -> tuple[float, int, int]:
        memory, keys = servers.redis.stats()
        return servers.workers.rss_mb(), memory, keys

    stop = asyncio.Event()
    poller = asyncio.create_task(servers.index.poll(stop))
    try:
        for _ in range(10):  # warm-up: every worker has served the flow
            launch()
        await asyncio.wait(set(in_flight), timeout=FLOW_SECONDS)
        start = sample()
        log(f"soak: {seconds:.0f} s at {rate}/s; start rss_mb={start[0]:.1f} used_memory={start[1]} dbsize={start[2]}")
        began = time.monotonic()
        mid: tuple[float, int, int] | None = None
        for n in range(int(seconds * rate)):
            due = began + n / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if mid is None and time.monotonic() - began >= seconds / 2:
                mid = sample()
                log(f"soak: mid rss_mb={mid[0]:.1f} used_memory={mid[1]} dbsize={mid[2]} flows={len(outcomes)}")
            if len(in_flight) >= 200:
                skipped += 1  # the servers are behind: do not pile up
                continue
            launch()
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=FLOW_SECONDS + 2 * REQUEST_TIMEOUT)
        await asyncio.sleep(1.0)
        end = sample()
        mid = mid or end
        logs = servers.workers.log_text()
    finally:
        stop.set()
        await poller
        servers.stop()
    done = [o for o in outcomes if o.completed]
    lat = sorted(o.latency for o in done if o.latency is not None)
    statuses: collections.Counter[str] = collections.Counter()
    for o in outcomes:
        statuses.update(o.statuses)
    log(
        f"  soak: started={next_user} completed={len(done)} unclear={sum(o.unclear for o in outcomes)} "
        f"clear={sum(o.clear for o in outcomes)} wrong_grants={sum(o.wrong_grants for o in outcomes)} "
        f"skipped={skipped} p50_s={statistics.median(lat) if lat else float('nan'):.2f}\n"
        f"    statuses: {dict(statuses.most_common())}\n  worker log lines by kind: {log_kinds(logs)}"
    )
    print(
        f"soak: rss_mb_start={start[0]:.1f} rss_mb_mid={mid[0]:.1f} rss_mb_end={end[0]:.1f} "
        f"redis_used_memory_start={start[1]} redis_used_memory_mid={mid[1]} redis_used_memory_end={end[1]} "
        f"dbsize_start={start[2]} dbsize_mid={mid[2]} dbsize_end={end[2]} flows={len(done)}",
        flush=True,
    )
    return 1 if any(o.wrong_grants for o in outcomes) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS", "300")))
    parser.add_argument("--phases", default="baseline,redis,provider", help="which runs of the load (comma list)")
    parser.add_argument("--soak", action="store_true", help="the soak instead of the load run")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "300")))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", "3")))
    parser.add_argument("--serve-double", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_double:
        serve_double(args.serve_double, 86400)
        return
    if not 1 <= args.users <= 3000:
        sys.exit("--users: 1 to 3000 (each user has a phone number of its own, 3 runs of them)")
    if not (0 < args.seconds <= 86400 and 0 < args.rate <= 100):
        sys.exit("--seconds: up to a day; --rate: up to 100 per second")
    if args.soak:
        sys.exit(asyncio.run(soak(args.seconds, args.rate)))
    sys.exit(asyncio.run(load(args.users, args.phases.split(","))))


if __name__ == "__main__":
    main()

"""Test your protected routes without a phone.

- ``SignalWireDouble``: a real HTTP server that acts as SignalWire's Compatibility API. It
  takes Create Call (checking HTTP Basic auth and the form), answers ``201`` with a call
  ``sid``, then, as the carrier does, POSTs to the ``Url`` with signed call parameters,
  presses a key at each ``<Gather>``, records what ``<Say>`` says, and posts status callbacks.
- ``LiveServer``: runs any ASGI app under uvicorn on a free loopback port, in a thread.
- ``voice2fa_override(app, double=...)``: points an app built at import time (the usual
  FastAPI layout) at a double for one test, with a fresh caller and store.
- pytest fixtures ``signalwire_double``, ``live_server_factory`` and ``voice2fa_app``,
  available in every test once the ``testing`` extra is installed (a ``pytest11`` plugin,
  loaded lazily).

Needs the ``testing`` extra: ``pip install 'voice2fa-middleware[testing]'``.

Example::

    def test_account_needs_voice_2fa(signalwire_double, live_server_factory, monkeypatch):
        for name, value in signalwire_double.env(public_url="http://127.0.0.1:8765").items(): ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.util
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from ._errors import MissingExtraError

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("voice2fa_middleware.testing", "testing") from exc
if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
    raise MissingExtraError("voice2fa_middleware.testing (python-multipart)", "testing")  # pragma: no cover

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from ._middleware import Voice2FAMiddleware
from ._settings import Voice2FASettings
from ._telephony.simulator import SimulatedCall, simulate_call

__all__ = ["LiveServer", "SignalWireDouble", "SimulatedCall", "port_for_later", "running", "voice2fa_override"]


def _free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class LiveServer:
    """Runs ``app`` under a real uvicorn server on loopback, in a background thread.

    Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``. Pass ``port`` to choose
    it (for URLs that must be known before the app is built).
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app = app
        self.host = host
        self._sock = _free_socket(host) if port == 0 else None
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        # proxy_headers=False: the peer address is what the app sees (uvicorn would otherwise
        # take X-Forwarded-For from loopback peers, which every test client is).
        config = uvicorn.Config(app, log_level=log_level, lifespan="auto", access_log=False, proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_stop: list[Callable[[], Awaitable[None]]] = []

    def start(self) -> LiveServer:
        def run() -> None:
            self.loop = loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            assert self._sock is not None
            try:
                loop.run_until_complete(self._server.serve(sockets=[self._sock]))
            finally:
                for hook in self.on_stop:
                    loop.run_until_complete(hook())
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                _close_transports(loop)
                loop.close()

        self._thread = threading.Thread(target=run, name=f"uvicorn:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _close_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Close what is still connected on a server's loop (a client the app kept, a connection cut by
    the shutdown): else the garbage collector finds it later, in another test, "unclosed"."""
    stray = [t for t in list(getattr(loop, "_transports", {}).values()) if t is not None and not t.is_closing()]
    for transport in stray:
        transport.close()
    if stray:
        loop.run_until_complete(asyncio.sleep(0))  # their connection_lost callbacks
        loop.run_until_complete(asyncio.sleep(0))


def port_for_later(host: str = "127.0.0.1") -> int:
    """A free loopback port number, for a server whose URL must be known in advance."""
    with _free_socket(host) as sock:
        return int(sock.getsockname()[1])


class SignalWireDouble:
    """SignalWire's Compatibility API and carrier, as a real HTTP server on loopback.

    ``outcome`` is how the next calls end: ``"completed"`` (answered; the LaML is fetched),
    or ``"busy"``, ``"no-answer"``, ``"failed"``. ``presses`` are the keys pressed at each
    ``<Gather>`` in turn (``("9",)``: "I did not try to sign in"). ``answered_by`` is who
    picks up: ``"human"``, or an answering machine (``"machine_end_beep"``, or another of
    SignalWire's AnsweredBy values), which presses no key; when Create Call asked for
    asynchronous answering machine detection, the verdict is posted to its
    ``AsyncAmdStatusCallback``. ``press_delay`` makes the person slow to press (longer than
    a ``<Gather>``'s timeout: not heard). ``calls_per_second`` limits Create Call as
    SignalWire does (``0``: no limit): a call over it is answered ``429`` with ``Retry-After``.
    ``create_delay`` makes Create Call slow to answer. ``port`` fixes the port
    (``port_for_later()``): a caller can try it before the double starts (refused). Each of
    these is an attribute too, read at each call: change it between calls.
    """

    def __init__(
        self,
        *,
        project: str = "a0b1c2d3-0000-4000-8000-00000000test",
        token: str = "PTtest-token",
        signing_key: str | None = "PSKtest-signing-key",
        from_number: str = "+12025550100",
        outcome: str = "completed",
        presses: Sequence[str] = ("1",),
        create_delay: float = 0.0,
        port: int = 0,
        answered_by: str = "human",
        press_delay: float = 0.0,
        calls_per_second: float = 0.0,
    ) -> None:
        self.project = project
        self.token = token
        self.signing_key = signing_key
        self.from_number = from_number
        self.outcome = outcome
        self.presses = tuple(presses)
        self.create_delay = create_delay
        self.answered_by = answered_by
        self.press_delay = press_delay
        self.calls_per_second = calls_per_second
        self._accepted_at: list[float] = []  # when the calls of the last second were created
        self.created_at: list[float] = []
        """When each call was created (``time.monotonic()``), in order: the pace calls came at."""
        self.calls: list[SimulatedCall] = []
        self.create_requests: list[list[tuple[str, str]]] = []
        self.rejected: list[int] = []
        self._failures: list[tuple[int, str, dict[str, str], str | None]] = []
        # The phone number lookup: each number's carrier line type ("wireless" unless set here),
        # the numbers looked up, and whether lookups fail (500).
        self.line_types: dict[str, str] = {}
        self.lookups: list[str] = []
        self.lookups_fail = False
        self._changed = threading.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        path = "/api/laml/2010-04-01/Accounts/{project}/Calls.json"
        account = "/api/laml/2010-04-01/Accounts/{project}.json"
        self.app = Starlette(
            routes=[
                Route(path, self._create_call, methods=["POST"]),
                Route(account, self._account, methods=["GET"]),  # read-only: credentials check
                Route("/api/relay/rest/lookup/phone_number/{number}", self._lookup, methods=["GET"]),
            ]
        )
        self._server = LiveServer(self.app, port=port)
        self._server.on_stop.append(self._aclose)
        self.url = self._server.url

    async def _aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- control ----------------------------------------------------------------------------

    def env(self, *, public_url: str | None = None) -> dict[str, str]:
        """The environment variables that point an app at this double."""
        env = {
            "SIGNALWIRE_SPACE": self.url,
            "SIGNALWIRE_PROJECT": self.project,
            "SIGNALWIRE_TOKEN": self.token,
            "SIGNALWIRE_NUMBER": self.from_number,
        }
        if self.signing_key:
            env["SIGNALWIRE_SIGNING_KEY"] = self.signing_key
        if public_url:
            env["VOICE2FA_PUBLIC_URL"] = public_url
        return env

    def fail_next(
        self,
        status: int = 500,
        *,
        shape: str = "code",
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``times`` Create Call requests with an error of ``shape``
        (``"code"``: ``{code, message, status}``; ``"errors"``: ``{errors: [...]}``) and
        ``headers`` (``{"Retry-After": "1"}``), or with ``body`` as it is: not JSON
        (``fail_next(200, body="<html>")``), or no sid (``body='{"status": "queued"}'``).
        No call is made; the status is recorded in ``rejected``."""
        self._failures.extend([(status, shape, dict(headers or {}), body)] * times)

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> list[SimulatedCall]:
        """Block until ``count`` calls have ended (answered or not); return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for c in self.calls if c.done) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} finished calls, have {len(self.calls)}")
                self._changed.wait(left)
        return list(self.calls)

    def wait_for_code(self, timeout: float = 10.0) -> str:
        """The code spoken in the latest call, once it has ended."""
        calls = self.wait_for_calls(len(self.calls) or 1, timeout)
        code = calls[-1].code()
        if code is None:
            raise AssertionError(f"no code was spoken; the call said {calls[-1].says!r} ({calls[-1].error})")
        return code

    def start(self) -> SignalWireDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SignalWireDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API ------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.project and password == self.token

    async def _account(self, request: Request) -> JSONResponse:
        if not self._authorized(request) or request.path_params["project"] != self.project:
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        return JSONResponse({"sid": self.project, "friendly_name": "test double", "status": "active"})

    async def _lookup(self, request: Request) -> JSONResponse:
        """SignalWire's phone number lookup, ``?include=carrier``: the carrier's line type."""
        if not self._authorized(request):
            return JSONResponse({"errors": [{"code": "UNAUTHORIZED"}]}, status_code=401)
        number = request.path_params["number"]
        self.lookups.append(number)
        if self.lookups_fail:
            return JSONResponse({"errors": [{"code": "INTERNAL"}]}, status_code=500)
        carrier = {"lec": "Test Carrier", "linetype": self.line_types.get(number, "wireless")}
        body: dict[str, Any] = {"e164": number, "country_code": "1", "national_number": number[2:]}
        if request.query_params.get("include") == "carrier":
            body["carrier"] = carrier
        return JSONResponse(body)

    async def _create_call(self, request: Request) -> Response:
        if request.path_params["project"] != self.project or not self._authorized(request):
            self.rejected.append(401)
            return JSONResponse({"code": "20003", "message": "Authentication Error", "status": 401}, status_code=401)
        form = await request.form()
        fields = [(k, str(v)) for k, v in form.multi_items()]
        self.create_requests.append(fields)
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        if self._failures:
            status, shape, headers, raw = self._failures.pop(0)
            self.rejected.append(status)
            if raw is not None:
                return Response(raw, status_code=status, headers=headers, media_type="application/json")
            if shape == "errors":
                errors = {"errors": [{"code": "CALL_CREATE_FAILED", "detail": "Call failed"}]}
                return JSONResponse(errors, status_code=status, headers=headers)
            error = {"code": "21210", "message": "Call failed", "status": status}
            return JSONResponse(error, status_code=status, headers=headers)
        if self.calls_per_second and self._over_rate():
            self.rejected.append(429)
            message = "Too Many Requests: calls per second limit reached"
            return JSONResponse(
                {"code": "20429", "message": message, "status": 429}, status_code=429, headers={"Retry-After": "1"}
            )
        missing = [name for name in ("From", "To", "Url") if not form.get(name)]
        if missing:
            self.rejected.append(400)
            return JSONResponse(
                {"code": "21205", "message": f"Missing parameter(s): {', '.join(missing)}", "status": 400},
                status_code=400,
            )
        sid = str(uuid.uuid4())
        self.created_at.append(time.monotonic())
        call = SimulatedCall(
            sid=sid,
            to=str(form["To"]),
            from_=str(form["From"]),
            url=str(form["Url"]),
            status_callback=str(form.get("StatusCallback") or "") or None,
            account_sid=self.project,
            send_digits=str(form.get("SendDigits") or ""),
            amd_callback=str(form.get("AsyncAmdStatusCallback") or "") or None,
        )
        with self._changed:
            self.calls.append(call)
        task = asyncio.get_running_loop().create_task(self._carry(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        body = {
            "sid": sid,
            "account_sid": self.project,
            "to": call.to,
            "from": call.from_,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
        }
        return JSONResponse(body, status_code=201)

    def _over_rate(self) -> bool:
        """Whether one more call now would pass ``calls_per_second`` (in a sliding second, less
        the 50 ms that requests sent on time may drift on their way); when not, it is counted."""
        now = time.monotonic()
        self._accepted_at = [t for t in self._accepted_at if now - t < 0.95]
        if len(self._accepted_at) >= max(1, int(self.calls_per_second)):
            return True
        self._accepted_at.append(now)
        return False

    async def _carry(self, call: SimulatedCall) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        await simulate_call(
            self._client,
            call,
            signing_key=self.signing_key or self.token,
            outcome=self.outcome,
            presses=self.presses,
            answered_by=self.answered_by,
            press_delay=self.press_delay,
        )
        with self._changed:
            self._changed.notify_all()


@contextmanager
def running(app: ASGIApp, *, port: int = 0) -> Iterator[LiveServer]:
    """``with running(app) as server: httpx.get(server.url + "/")``."""
    with LiveServer(app, port=port) as server:
        yield server


@contextmanager
def voice2fa_override(
    app: Any, *, double: SignalWireDouble, public_url: str | None = None, **settings: Any
) -> Iterator[None]:
    """Point an app built at import time at ``double`` for the ``with`` block (one test).

    The usual layout builds the app once, when its module is imported (``app = FastAPI()``,
    ``app.add_middleware(Voice2FAMiddleware, ...)``), and Starlette builds the middlewares once,
    at the app's first start: without this, every later test runs with the first test's
    settings, its caller (pointing at a double that is gone, so the breaker opens: 502, then
    503) and its store. In the block, the app's ``Voice2FAMiddleware`` is built anew at the next
    start, with its settings (the app's own, else the environment's, read now) pointing at
    ``double``, ``public_url`` (``None``: the server's address) and ``settings`` on top; a new
    caller (one the app passed is set aside); and a new ``MemoryStore`` unless the app passed a
    store of another kind (give a Redis store a key prefix per test). After the block, the app is
    as it was, built anew at its next start. Start the server inside the block.
    """
    entries = getattr(app, "user_middleware", None)
    if entries is None or not hasattr(app, "middleware_stack"):
        raise TypeError("voice2fa_override needs a Starlette or FastAPI app (one with add_middleware)")
    original = list(entries)
    replaced = []
    for entry in original:
        if not (isinstance(entry.cls, type) and issubclass(entry.cls, Voice2FAMiddleware)):
            replaced.append(entry)
            continue
        kwargs = dict(entry.kwargs)
        base = kwargs.get("settings") or Voice2FASettings.from_env()
        kwargs["settings"] = base.replace(
            signalwire_space=double.url,
            signalwire_project=double.project,
            signalwire_token=double.token,
            from_number=double.from_number,
            signing_key=double.signing_key,
            public_url=public_url,
            **settings,
        )
        kwargs.pop("caller", None)
        if kwargs.get("store") is None or not getattr(kwargs["store"], "shared", True):
            # An in-process store (MemoryStore, by its capability): a new, empty one. The default,
            # with settings that name no Redis, is a new MemoryStore.
            kwargs.pop("store", None)
        replaced.append(type(entry)(entry.cls, *entry.args, **kwargs))
    if replaced == original:
        raise LookupError("voice2fa_override: the app has no Voice2FAMiddleware (added with app.add_middleware)")
    app.user_middleware = replaced
    app.middleware_stack = None  # Starlette builds it again at the next start, with the new entries
    try:
        yield
    finally:
        app.user_middleware = original
        app.middleware_stack = None

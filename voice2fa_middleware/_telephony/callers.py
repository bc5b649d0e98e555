"""Callers place the call; they know nothing of codes, limits or cookies.

- ``SignalWireCaller``: SignalWire's Compatibility REST API on ``httpx.AsyncClient``.
- ``ConsoleCaller``: the default with no credentials; plays the call locally, as the carrier
  would, and shows the developer what it says. Not for production.
- ``SignalWireSDKCaller``: the official SDK (the ``signalwire`` extra) in a worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.to_thread
import httpx

from .._errors import CallError, MissingExtraError
from .breaker import Breaker, StateHook
from .simulator import SimulatedCall, simulate_call
from .status import STATUS_EVENTS

logger = logging.getLogger("voice2fa.caller")


@runtime_checkable
class Caller(Protocol):
    """Places one outbound call whose script is fetched from ``laml_url``.

    Besides ``place_call``, a caller declares what the middleware may ask of it, so that a
    caller of your own takes part on the same terms as the ones that ship (subclass
    :class:`BaseCaller` for the defaults):

    - ``calls_nobody``: ``True`` for a development caller that places no real call (its
      calls cost nothing: the hourly budgets are relaxed, and the dev phone page shows them);
    - ``paused_for()``: seconds during which calls would fail at once (a circuit breaker is
      open), so that no budget is charged and the user is told when to come back;
    - ``played_calls()``: the calls a development caller played, newest last (the dev phone);
    - ``sends_digits``: ``True`` when ``place_call`` also takes ``send_digits=`` (key presses
      sent once the call connects, ``"wwww123"``: how a number's extension is reached). It is
      read with ``getattr`` (default ``False``), and ``send_digits`` is passed only to a
      caller that declares it, and only when there are digits to send: a caller without it
      still calls a number with an extension, and the user reaches the extension themselves.

    A caller that has only ``place_call`` is taken as a real one that is never paused.
    """

    calls_nobody: bool

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        """Place the call; return the provider's call id. Raise ``CallError`` on failure."""

    def paused_for(self) -> float:
        """Seconds calls still fail at once; ``0``: a call may be tried."""

    def played_calls(self) -> Sequence[SimulatedCall]:
        """The calls a development caller played (empty for a real one)."""


class PlacesCalls(Protocol):
    """The least a caller must have: ``place_call`` (see :class:`Caller` for the rest)."""

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        """Place the call; return the provider's call id. Raise ``CallError`` on failure."""


class SendsDigits(Protocol):
    """A caller that declares ``sends_digits = True``: its ``place_call`` takes ``send_digits``."""

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str, send_digits: str = "") -> str:
        """Place the call, then press ``send_digits`` once it connects (``w``: wait half a second)."""


def sends_digits(caller: object) -> bool:
    """Whether ``caller`` takes ``send_digits=`` (it says so with ``sends_digits = True``)."""
    return getattr(caller, "sends_digits", False) is True


class BaseCaller:
    """The defaults of :class:`Caller`'s capabilities: a real caller, never paused."""

    calls_nobody: bool = False
    sends_digits: bool = False

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        raise NotImplementedError

    def paused_for(self) -> float:
        return 0.0

    def played_calls(self) -> Sequence[SimulatedCall]:
        return ()


class _Adapted(BaseCaller):
    """A caller with only ``place_call``, given the default capabilities."""

    def __init__(self, inner: PlacesCalls) -> None:
        self.inner = inner
        self.place_call = inner.place_call  # type: ignore[method-assign]
        self.sends_digits = sends_digits(inner)

    async def aclose(self) -> None:
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()


def as_caller(caller: PlacesCalls) -> Caller:
    """``caller`` with every capability :class:`Caller` declares (defaults where it has none)."""
    if all(hasattr(caller, name) for name in ("calls_nobody", "paused_for", "played_calls")):
        return caller  # type: ignore[return-value]
    return _Adapted(caller)


_jitter = secrets.SystemRandom()  # backoff jitter; SystemRandom keeps ruff's S311 quiet without a noqa
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)  # failed before the request left: surely no call
_REFUSED = (429, 503)  # SignalWire's documented "not now": the call was not created
_CREDENTIALS = (401, 403)
_GRACE = 0.25  # seconds past the deadline before an attempt is cut short (httpx's own timeouts fire first)
_MIN_TRY = 0.1  # seconds: the least time left worth another try (and at least twice what the last one took)


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds of a ``Retry-After`` header (a number or an HTTP date), or ``None``."""
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _provider_error(response: httpx.Response, **extra: Any) -> CallError:
    """Read both of SignalWire's error shapes: ``{code, message, status}`` and ``{errors: []}``."""
    code: str | None = None
    message = f"provider answered HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                code = str(first.get("code") or "") or None
                message = str(first.get("detail") or first.get("message") or message)
        elif body.get("message") or body.get("code"):
            code = str(body.get("code") or "") or None
            message = str(body.get("message") or message)
    return CallError(message[:300], status=response.status_code, code=code, **extra)


class SignalWireCaller(BaseCaller):
    """Creates calls with ``POST {space}/api/laml/2010-04-01/Accounts/{project}/Calls.json``.

    ``space`` is a host (``example.signalwire.com``, https) or a full URL (a test double).
    Pass ``client`` to share an ``httpx.AsyncClient``; otherwise one is made and reused.

    Retries: only when the call surely was not made (no connection; 429 or 503), after
    ``backoff`` s doubled per try up to ``max_backoff`` (jittered: half to all of it) or the
    ``Retry-After`` asked for, within ``deadline`` s in all (default ``timeout``, which bounds
    each step of one try; keep it under the page's patience, ``call_timeout`` + 1 s), and only
    while twice what the last try took (0.1 s at least) is left after the pause: a try the
    deadline cuts short after its request left would leave the call in doubt. After the
    request may have left, never: ``CallError(maybe_placed=True)``.

    Circuit breaker (per caller, so per process): ``failure_threshold`` failed tries in a row
    (no connection, timeout, 5xx, bad answer, 401/403) make calls raise
    ``ProviderUnavailableError`` at once for ``first_cooldown`` s (default: ``cooldown``;
    timed by ``clock``); then one trial call closes it, or opens it again for twice as long,
    up to ``cooldown``. A 429 is back-pressure, not a failure: the provider is up and asks
    for fewer calls per second, so it is retried after its ``Retry-After`` within the
    deadline and never opens the circuit. ``on_state_change`` (called in the event loop: it
    must not block) is told ``"open"``, ``"half_open"``, ``"closed"``. Rejected credentials
    are logged once as an ERROR, until a call succeeds.

    ``machine_detection``: ask for answering machine detection, asynchronous (the call's
    script starts at once; the verdict comes later): ``MachineDetection=DetectMessageEnd``,
    ``AsyncAmd=true``, and the verdict posted to ``{status_url}/amd`` (a signed webhook).
    Billed by the provider per call. ``send_digits`` (an extension, ``"wwww123"``) goes out
    as ``SendDigits``.
    """

    sends_digits = True

    def __init__(
        self,
        *,
        space: str,
        project: str,
        token: str,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        deadline: float | None = None,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        first_cooldown: float | None = None,
        on_state_change: StateHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        machine_detection: bool = False,
    ) -> None:
        base = space.rstrip("/")
        if "://" not in base:
            base = "https://" + base
        self.calls_url = f"{base}/api/laml/2010-04-01/Accounts/{project}/Calls.json"
        self._auth = httpx.BasicAuth(project, token)
        self._timeout = timeout
        self._deadline = timeout if deadline is None else deadline
        self._backoff, self._max_backoff = backoff, max_backoff
        self._breaker = Breaker(failure_threshold, cooldown, clock, on_state_change, first_cooldown)
        self._credentials_logged = False
        self._client = client
        self._own_client = client is None
        self.machine_detection = machine_detection

    @property
    def state(self) -> str:
        """The circuit breaker's state: ``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._breaker.state

    def paused_for(self) -> float:
        """Seconds calls still fail at once (the circuit is open); ``0``: a call may be tried."""
        return self._breaker.paused_for()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str, send_digits: str = "") -> str:
        """Place the call; return its sid. Raise ``CallError`` (see the class docstring)."""
        form: dict[str, str | list[str]] = {"From": from_, "To": to, "Url": laml_url, "Method": "POST"}
        form |= {"StatusCallback": status_url, "StatusCallbackMethod": "POST", "StatusCallbackEvent": [*STATUS_EVENTS]}
        if self.machine_detection:
            form |= {
                "MachineDetection": "DetectMessageEnd",
                "AsyncAmd": "true",
                "AsyncAmdStatusCallback": status_url + "/amd",
                "AsyncAmdStatusCallbackMethod": "POST",
            }
        if send_digits:
            form["SendDigits"] = send_digits
        deadline = anyio.current_time() + self._deadline
        tries = 0
        while True:
            trial, began = self._breaker.admit(), anyio.current_time()
            try:
                result = await self._try(form, deadline)
            finally:
                if trial:  # also when cancelled: the next call may be the trial
                    self._breaker.trial = False
            if isinstance(result, str):
                return result
            step = min(self._max_backoff, self._backoff * 2**tries)
            pause = max(step / 2 + _jitter.uniform(0, step / 2), result.retry_after or 0.0)
            # A try cut short by the deadline after its request left would leave the call in
            # doubt (maybe_placed): retry only if it has the time the last try took, twice over.
            now = anyio.current_time()
            if self._breaker.state == "open" or now + pause + max(_MIN_TRY, 2 * (now - began)) >= deadline:
                raise result  # calls are now paused, or no time is left for another try
            await anyio.sleep(pause)
            tries += 1

    async def _try(self, form: dict[str, str | list[str]], deadline: float) -> str | CallError:
        """One Create Call: the sid, a ``CallError`` worth retrying, or raise one that is not."""
        left = max(0.0, deadline - anyio.current_time())
        breaker = self._breaker
        try:
            with anyio.fail_after(left + _GRACE):
                response = await self._http().post(
                    self.calls_url, data=form, auth=self._auth, timeout=min(self._timeout, left)
                )
        except _NOT_SENT as exc:
            breaker.failure()
            late = " in time" if isinstance(exc, httpx.TimeoutException) else ""
            return CallError(f"the provider could not be reached{late} ({type(exc).__name__})")
        except (httpx.HTTPError, TimeoutError) as exc:  # the request may have left: the call may exist
            breaker.failure()
            message = f"no answer from the provider ({type(exc).__name__}): the call may still come"
            raise CallError(message, maybe_placed=True) from exc
        status = response.status_code
        if status in _CREDENTIALS:
            self._log_credentials(status)
        if response.is_success:
            try:
                sid = response.json().get("sid")
            except (ValueError, AttributeError):
                sid = None
            if not isinstance(sid, str) or not sid:
                breaker.failure()
                raise CallError("the provider's answer had no call sid", status=status, maybe_placed=True)
            breaker.success()
            self._credentials_logged = False
            return sid
        if status == 429:  # back-pressure (calls per second): the provider works; try again later
            return _provider_error(response, retry_after=_retry_after(response))
        if status in _REFUSED:
            breaker.failure()
            return _provider_error(response, retry_after=_retry_after(response))
        if status >= 500 or status in _CREDENTIALS:
            breaker.failure()
            # A gateway's 502/504: the API behind it may have created the call.
            raise _provider_error(response, maybe_placed=status in (502, 504))
        breaker.success()  # the provider works; the request was refused (an invalid number, ...)
        raise _provider_error(response)

    def _log_credentials(self, status: int) -> None:
        if self._credentials_logged:
            logger.debug("voice2fa: SignalWire refused the credentials again (HTTP %s)", status)
            return
        self._credentials_logged = True
        logger.error(
            "voice2fa: SignalWire refused the credentials (HTTP %s) for %s: fix SIGNALWIRE_PROJECT and "
            "SIGNALWIRE_TOKEN (SignalWireCaller's project= and token=); no call can be placed until then (logged once)",
            status,
            self.calls_url,
        )

    async def aclose(self) -> None:
        """Close the HTTP client, unless it was passed in."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


class ConsoleCaller(BaseCaller):
    """Development caller: plays the call against the app's own LaML endpoint, signed as
    the carrier signs, and prints what the call says to the terminal (stderr, not the
    logging system) and on the dev phone page. It costs nothing and calls no one.
    """

    calls_nobody = True
    sends_digits = True  # recorded on the played call; nobody is there to hear them

    def __init__(self, *, signing_key: str, echo: bool = True, history: int = 20) -> None:
        self._key = signing_key
        self._echo = echo
        self.calls: collections.deque[SimulatedCall] = collections.deque(maxlen=history)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str, send_digits: str = "") -> str:
        call = SimulatedCall(
            sid=str(uuid.uuid4()),
            to=to,
            from_=from_,
            url=laml_url,
            status_callback=status_url,
            account_sid="console",
            send_digits=send_digits,
        )
        self.calls.append(call)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        task = asyncio.get_running_loop().create_task(self._play(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call.sid

    def played_calls(self) -> Sequence[SimulatedCall]:
        return tuple(self.calls)

    async def _play(self, call: SimulatedCall) -> None:
        assert self._client is not None
        await simulate_call(self._client, call, signing_key=self._key)
        if self._echo:
            lines = "\n".join(f"    \N{SPEAKER WITH THREE SOUND WAVES} {s}" for s in call.says)
            problem = f"\n    (the call failed: {call.error})" if call.error else ""
            print(
                f"\n[voice2fa console caller - NOT FOR PRODUCTION] call to {call.to}:\n{lines}{problem}\n",
                file=sys.stderr,
                flush=True,
            )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class SignalWireSDKCaller(BaseCaller):
    """Places calls with the official ``signalwire`` SDK, run in a worker thread so the
    event loop never blocks. Needs ``pip install 'voice2fa-middleware[signalwire]'``.
    """

    def __init__(self, *, space: str, project: str, token: str) -> None:
        try:
            from signalwire.rest import Client
        except ImportError as exc:
            raise MissingExtraError("SignalWireSDKCaller", "signalwire") from exc
        host = space.split("://", 1)[-1].rstrip("/")
        self._client = Client(project, token, signalwire_space_url=host)

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        def create() -> str:
            call = self._client.calls.create(
                to=to,
                from_=from_,
                url=laml_url,
                method="POST",
                status_callback=status_url,
                status_callback_method="POST",
                status_callback_event=list(STATUS_EVENTS),
            )
            return str(call.sid)

        try:
            return await anyio.to_thread.run_sync(create)
        except Exception as exc:
            status = getattr(exc, "status", None)
            raise CallError(f"the provider refused the call ({type(exc).__name__})", status=status) from exc

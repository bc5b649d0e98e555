"""Callers place the call; they know nothing of codes, limits or cookies.

- ``SignalWireCaller``: SignalWire's Compatibility REST API on ``httpx.AsyncClient``.
- ``ConsoleCaller``: the default with no credentials; plays the call locally, as the carrier
  would, and shows the developer what it says. Not for production.
- ``SignalWireSDKCaller``: the official SDK (the ``signalwire`` extra) in a worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import uuid
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
import httpx

from ._carrier import SimulatedCall, simulate_call
from ._errors import CallError, MissingExtraError

logger = logging.getLogger("voice2fa.caller")

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")


@runtime_checkable
class Caller(Protocol):
    """Places one outbound call whose script is fetched from ``laml_url``."""

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        """Place the call; return the provider's call id. Raise ``CallError`` on failure."""


def _provider_error(response: httpx.Response) -> CallError:
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
    return CallError(message[:300], status=response.status_code, code=code)


class SignalWireCaller:
    """Creates calls with ``POST {space}/api/laml/2010-04-01/Accounts/{project}/Calls.json``.

    ``space`` is a host (``example.signalwire.com``, https) or a full URL (a test double).
    Pass ``client`` to share an ``httpx.AsyncClient``; otherwise one is made and reused.
    """

    def __init__(
        self,
        *,
        space: str,
        project: str,
        token: str,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        base = space.rstrip("/")
        if "://" not in base:
            base = "https://" + base
        self.calls_url = f"{base}/api/laml/2010-04-01/Accounts/{project}/Calls.json"
        self._auth = httpx.BasicAuth(project, token)
        self._timeout = timeout
        self._client = client
        self._own_client = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        form: dict[str, str | list[str]] = {
            "From": from_,
            "To": to,
            "Url": laml_url,
            "Method": "POST",
            "StatusCallback": status_url,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": list(STATUS_EVENTS),
        }
        try:
            response = await self._http().post(self.calls_url, data=form, auth=self._auth, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise CallError("the provider did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise CallError(f"the provider could not be reached ({type(exc).__name__})") from exc
        if not response.is_success:
            raise _provider_error(response)
        try:
            sid = response.json().get("sid")
        except (ValueError, AttributeError):
            sid = None
        if not isinstance(sid, str) or not sid:
            raise CallError("the provider's answer had no call sid", status=response.status_code)
        return sid

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


class ConsoleCaller:
    """Development caller: plays the call against the app's own LaML endpoint, signed as
    the carrier signs, and prints what the call says to the terminal (stderr, not the
    logging system) and on the dev phone page. It costs nothing and calls no one.
    """

    def __init__(self, *, signing_key: str, echo: bool = True, history: int = 20) -> None:
        self._key = signing_key
        self._echo = echo
        self.calls: collections.deque[SimulatedCall] = collections.deque(maxlen=history)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        call = SimulatedCall(
            sid=str(uuid.uuid4()),
            to=to,
            from_=from_,
            url=laml_url,
            status_callback=status_url,
            account_sid="console",
        )
        self.calls.append(call)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        task = asyncio.get_running_loop().create_task(self._play(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call.sid

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


class SignalWireSDKCaller:
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

"""A provider that fails well: SignalWireCaller against a real SignalWireDouble on loopback.

Retried only when the call surely was not made (no connection, 429, 503), within a deadline;
never after the request may have left (a read timeout, a 5xx, a bad answer): the error then
says the call may still come. A circuit breaker stops calling a failing provider for a while,
and rejected credentials are logged once for the operator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from voice2fa_middleware import CallError, SignalWireCaller
from voice2fa_middleware._errors import ProviderUnavailableError
from voice2fa_middleware.testing import SignalWireDouble, port_for_later

from .conftest import Harness

pytestmark = pytest.mark.anyio

CALL = {"to": "+12025550143", "from_": "+12025550100", "laml_url": "https://a/l", "status_url": "https://a/s"}


class Monotonic:
    """An injectable monotonic clock: the breaker's cool-down passes without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Attempts(httpx.AsyncBaseTransport):
    """The requests a caller sends, refused connections included, and the seconds each took
    (an httpx transport around the real one)."""

    def __init__(self) -> None:
        self.took: list[float] = []
        self._transport = httpx.AsyncHTTPTransport()

    @property
    def count(self) -> int:
        return len(self.took)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.monotonic()
        try:
            return await self._transport.handle_async_request(request)
        finally:
            self.took.append(time.monotonic() - start)

    async def aclose(self) -> None:
        await self._transport.aclose()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self)

    def assert_gave_up_at_the_deadline(self, elapsed: float) -> None:
        """For ``deadline=1.0`` and pauses of 0.025-0.05, 0.05-0.1, then 0.1-0.2 s: the caller
        stops only when the next pause and twice the last try (0.1 s at least: a try cut short
        after its request left would leave the call in doubt) no longer fit before the deadline.
        A loaded machine makes tries slower and fewer; this bound follows the slowest one (seen
        from the transport, plus 0.05 s of the caller's own work); with fast tries it is 0.7 s."""
        assert 0.8 - max(0.1, 2 * max(self.took) + 0.05) <= elapsed <= 1.6
        assert self.count <= 12  # the shortest pauses, tries taking no time: 12 at most fit


@pytest.fixture
def double() -> Iterator[SignalWireDouble]:
    with SignalWireDouble() as d:
        yield d


@pytest.fixture
def clock() -> Monotonic:
    return Monotonic()


OPENED: list[SignalWireCaller] = []


def opened(caller: SignalWireCaller) -> SignalWireCaller:
    """``caller``, closed when the test ends (see ``close_callers``)."""
    OPENED.append(caller)
    return caller


@pytest.fixture(autouse=True)
async def close_callers(anyio_backend: str) -> AsyncIterator[None]:
    """Closes the test's callers even when it fails before its own ``aclose()``: otherwise the
    garbage collector finds their connections open in a later test, which then fails with an
    "unclosed transport" ResourceWarning (warnings are errors). Closing twice is harmless."""
    yield
    while OPENED:
        await OPENED.pop().aclose()


def caller_for(double: SignalWireDouble | None = None, *, url: str | None = None, **kwargs: Any) -> SignalWireCaller:
    """A caller of ``double`` (or of ``url``), with fast retries unless told otherwise."""
    options: dict[str, Any] = {"backoff": 0.05, "max_backoff": 0.2, "timeout": 5.0, **kwargs}
    if double is not None:
        return opened(SignalWireCaller(space=double.url, project=double.project, token=double.token, **options))
    assert url is not None
    return opened(SignalWireCaller(space=url, project="p", token="t", **options))


def closed_port_url() -> str:
    """A loopback URL nothing listens on: every connection is refused."""
    return f"http://127.0.0.1:{port_for_later()}"


async def place(caller: SignalWireCaller) -> str:
    return await caller.place_call(**CALL)


# -- retried: the call surely was not made ---------------------------------------------------------


async def test_refused_then_recovering_provider_places_exactly_one_call() -> None:
    port = port_for_later()
    attempts = Attempts()
    later = SignalWireDouble(port=port)  # configured now, listening only once started
    timer = threading.Timer(0.5, later.start)
    async with attempts.client() as client:
        caller = SignalWireCaller(
            space=f"http://127.0.0.1:{port}",
            project=later.project,
            token=later.token,
            client=client,
            deadline=8,
            backoff=0.05,
            max_backoff=0.2,
            failure_threshold=50,
        )
        timer.start()
        try:
            sid = await place(caller)
            assert later.wait_for_calls(1)[0].sid == sid
        finally:
            timer.join()
            later.stop()
    assert attempts.count >= 2  # at least one refused connection, retried
    assert len(later.create_requests) == 1 and later.rejected == []  # exactly one Create Call reached it


@pytest.mark.parametrize("status", [429, 503])
async def test_refusals_are_retried_and_the_recovered_provider_places_one_call(
    double: SignalWireDouble, status: int
) -> None:
    double.fail_next(status, times=2)
    caller = caller_for(double)
    sid = await place(caller)
    await caller.aclose()
    assert len(double.create_requests) == 3 and double.rejected == [status, status]
    assert [c.sid for c in double.wait_for_calls(1)] == [sid]


async def test_retry_after_is_honoured(double: SignalWireDouble) -> None:
    double.fail_next(429, headers={"Retry-After": "1"})
    caller = caller_for(double, deadline=5)
    start = time.monotonic()
    await place(caller)
    elapsed = time.monotonic() - start
    await caller.aclose()
    assert elapsed >= 0.95  # the backoff alone would be under 0.05 s
    assert len(double.create_requests) == 2


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(double: SignalWireDouble) -> None:
    double.fail_next(503, headers={"Retry-After": "30"})
    caller = caller_for(double, deadline=3)
    start = time.monotonic()
    with pytest.raises(CallError) as info:
        await place(caller)
    await caller.aclose()
    assert time.monotonic() - start < 1.5
    assert info.value.status == 503 and info.value.retry_after == 30 and not info.value.maybe_placed
    assert len(double.create_requests) == 1


async def test_refused_for_good_gives_up_at_the_deadline() -> None:
    attempts = Attempts()
    async with attempts.client() as client:
        caller = caller_for(url=closed_port_url(), client=client, deadline=1.0, failure_threshold=100)
        start = time.monotonic()
        with pytest.raises(CallError) as info:
            await place(caller)
        elapsed = time.monotonic() - start
    attempts.assert_gave_up_at_the_deadline(elapsed)
    assert attempts.count >= 5  # a refused connection takes a few ms: at least 5 tries fit in 1 s
    assert info.value.status is None and not info.value.maybe_placed
    assert "could not be reached" in str(info.value)
    assert caller.state == "closed"


async def test_provider_refusing_for_good_gives_up_at_the_deadline(double: SignalWireDouble) -> None:
    double.fail_next(503, times=100)
    attempts = Attempts()
    async with attempts.client() as client:
        caller = caller_for(double, client=client, deadline=1.0, failure_threshold=100)
        start = time.monotonic()
        with pytest.raises(CallError) as info:
            await place(caller)
        elapsed = time.monotonic() - start
    attempts.assert_gave_up_at_the_deadline(elapsed)
    # Each try is a round trip to the double, whose server thread shares this process: under
    # load one may take a good part of the second, so only "retried" is certain, not how often.
    assert len(double.create_requests) == attempts.count >= 2 and double.calls == []
    # The last try had time to be answered: the provider's 503, not a timeout that leaves the
    # call in doubt (before the fix, a try started with a few ms left ended in a WriteTimeout).
    assert info.value.status == 503 and not info.value.maybe_placed


async def test_no_try_is_started_without_the_time_to_be_answered() -> None:
    with SignalWireDouble(create_delay=0.35) as slow:
        slow.fail_next(503, times=10)
        caller = caller_for(slow, deadline=1.0, failure_threshold=100)
        with pytest.raises(CallError) as info:
            await place(caller)
        await caller.aclose()
    # Every try takes 0.35 s: a third, started some 0.8 s in, would be cut short by the deadline
    # after its request left, and "the call may still come" where the provider refused them all.
    assert info.value.status == 503 and not info.value.maybe_placed
    assert 1 <= len(slow.create_requests) <= 2


# -- never retried: the request may have left -----------------------------------------------------------


async def test_a_read_timeout_is_not_retried_and_the_call_may_still_come() -> None:
    with SignalWireDouble(create_delay=1.0) as slow:
        caller = caller_for(slow, timeout=0.3, deadline=5)
        start = time.monotonic()
        with pytest.raises(CallError) as info:
            await place(caller)
        elapsed = time.monotonic() - start
        await caller.aclose()
        assert elapsed < 0.9
        assert info.value.maybe_placed and info.value.status is None
        assert len(slow.create_requests) == 1
        assert len(slow.wait_for_calls(1)) == 1  # and indeed the provider made the call after all


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_error_may_have_placed_the_call(double: SignalWireDouble, status: int) -> None:
    double.fail_next(status)
    caller = caller_for(double)
    with pytest.raises(CallError) as info:
        await place(caller)
    await caller.aclose()
    assert info.value.status == status and info.value.maybe_placed
    assert len(double.create_requests) == 1  # not retried: it may exist


async def test_a_500_is_not_retried(double: SignalWireDouble) -> None:
    double.fail_next(500)
    caller = caller_for(double)
    with pytest.raises(CallError) as info:
        await place(caller)
    assert info.value.status == 500 and not info.value.maybe_placed  # an answer: no call
    assert len(double.create_requests) == 1
    await place(caller)  # the next call works
    await caller.aclose()
    assert len(double.create_requests) == 2


@pytest.mark.parametrize("body", ["<html>upstream error</html>", '{"status": "queued"}'])
async def test_a_success_without_a_sid_is_not_retried(double: SignalWireDouble, body: str) -> None:
    double.fail_next(200, body=body)
    caller = caller_for(double)
    with pytest.raises(CallError, match="no call sid") as info:
        await place(caller)
    await caller.aclose()
    assert info.value.status == 200 and info.value.maybe_placed
    assert len(double.create_requests) == 1


async def test_a_request_error_is_not_retried_nor_held_against_the_provider(double: SignalWireDouble) -> None:
    double.fail_next(400, times=6)
    caller = caller_for(double, failure_threshold=2)
    for _ in range(6):
        with pytest.raises(CallError) as info:
            await place(caller)
        assert info.value.status == 400 and not info.value.maybe_placed
    await caller.aclose()
    assert len(double.create_requests) == 6
    assert caller.state == "closed"  # an invalid number says nothing of the provider's health


# -- bad credentials ------------------------------------------------------------------------------------


async def test_rejected_credentials_are_logged_once(double: SignalWireDouble, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="voice2fa")
    caller = opened(SignalWireCaller(space=double.url, project=double.project, token="wrong", failure_threshold=10))
    for _ in range(3):
        with pytest.raises(CallError) as info:
            await place(caller)
        assert info.value.status == 401 and not info.value.maybe_placed
    await caller.aclose()
    assert double.rejected == [401, 401, 401]  # not retried
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "SIGNALWIRE_PROJECT" in errors[0].getMessage() and "SIGNALWIRE_TOKEN" in errors[0].getMessage()
    assert "wrong" not in errors[0].getMessage()  # never the token
    assert sum(1 for r in caplog.records if r.levelno == logging.DEBUG and "credentials" in r.getMessage()) == 2


async def test_a_success_rearms_the_credentials_error(
    double: SignalWireDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caller = caller_for(double)
    right = double.token
    for token in ["rotated", "rotated", right, "rotated"]:
        double.token = token  # the token was rotated at SignalWire, then set right, then rotated again
        with caplog.at_level(logging.ERROR, logger="voice2fa"):
            if token == right:
                await place(caller)
            else:
                with pytest.raises(CallError):
                    await place(caller)
    await caller.aclose()
    assert sum(1 for r in caplog.records if r.levelno == logging.ERROR) == 2


async def test_rejected_credentials_open_the_breaker(double: SignalWireDouble, clock: Monotonic) -> None:
    caller = opened(
        SignalWireCaller(space=double.url, project=double.project, token="wrong", failure_threshold=2, clock=clock)
    )
    for _ in range(2):
        with pytest.raises(CallError):
            await place(caller)
    with pytest.raises(ProviderUnavailableError):
        await place(caller)
    await caller.aclose()
    assert double.rejected == [401, 401]  # every call fails until an operator acts: fail fast


# -- the circuit breaker ----------------------------------------------------------------------------------


async def test_breaker_opens_fails_fast_half_opens_and_closes(
    double: SignalWireDouble, clock: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voice2fa")
    states: list[str] = []
    caller = caller_for(double, failure_threshold=3, cooldown=30, clock=clock, on_state_change=states.append)
    double.fail_next(500, times=3)
    for _ in range(3):
        with pytest.raises(CallError) as info:
            await place(caller)
        assert not isinstance(info.value, ProviderUnavailableError)
    assert caller.state == "open" and states == ["open"]
    assert any(r.levelno == logging.WARNING and "circuit open" in r.getMessage() for r in caplog.records)

    start = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as fast:
        await place(caller)
    assert time.monotonic() - start < 0.5  # at once: no request, no pause (the timeout is 5 s); 0.5 s for a loaded CPU
    assert fast.value.retry_after == 30 and not fast.value.maybe_placed
    assert len(double.create_requests) == 3  # nothing reached the provider

    clock.advance(20)
    with pytest.raises(ProviderUnavailableError) as still:
        await place(caller)
    assert still.value.retry_after == 10
    clock.advance(10)
    sid = await place(caller)  # the trial call
    assert sid and caller.state == "closed" and states == ["open", "half_open", "closed"]
    assert len(double.create_requests) == 4
    assert any(r.levelno == logging.INFO and "circuit closed" in r.getMessage() for r in caplog.records)
    await place(caller)
    await caller.aclose()
    assert len(double.create_requests) == 5


async def test_a_failed_trial_opens_the_breaker_again(double: SignalWireDouble, clock: Monotonic) -> None:
    states: list[str] = []
    caller = caller_for(double, failure_threshold=2, cooldown=30, clock=clock, on_state_change=states.append)
    double.fail_next(500, times=3)
    for _ in range(2):
        with pytest.raises(CallError):
            await place(caller)
    clock.advance(30)
    with pytest.raises(CallError) as trial:
        await place(caller)
    assert trial.value.status == 500 and states == ["open", "half_open", "open"]
    with pytest.raises(ProviderUnavailableError) as again:
        await place(caller)
    await caller.aclose()
    assert again.value.retry_after == 30  # a full cool-down from the failed trial
    assert len(double.create_requests) == 3


async def test_a_retryable_trial_failure_is_not_retried(double: SignalWireDouble, clock: Monotonic) -> None:
    caller = caller_for(double, failure_threshold=1, cooldown=30, clock=clock, deadline=5)
    double.fail_next(503, times=2)
    with pytest.raises(CallError):
        await place(caller)  # opens at once: no retry of a provider that is now paused
    assert len(double.create_requests) == 1
    clock.advance(30)
    with pytest.raises(CallError) as trial:
        await place(caller)
    await caller.aclose()
    assert trial.value.status == 503 and caller.state == "open"
    assert len(double.create_requests) == 2


async def test_connection_failures_open_the_breaker_during_the_retries(clock: Monotonic) -> None:
    attempts = Attempts()
    async with attempts.client() as client:
        caller = caller_for(url=closed_port_url(), client=client, failure_threshold=3, clock=clock, deadline=5)
        start = time.monotonic()
        with pytest.raises(CallError) as info:
            await place(caller)
        assert time.monotonic() - start < 1.0  # stopped at the third failure, not at the deadline
        assert not isinstance(info.value, ProviderUnavailableError) and "could not be reached" in str(info.value)
        assert attempts.count == 3 and caller.state == "open"
        with pytest.raises(ProviderUnavailableError):
            await place(caller)
    assert attempts.count == 3


async def test_only_one_trial_call_while_half_open(clock: Monotonic) -> None:
    with SignalWireDouble(create_delay=0.5) as slow:
        caller = caller_for(slow, failure_threshold=1, cooldown=30, clock=clock)
        slow.fail_next(500)
        with pytest.raises(CallError):
            await place(caller)
        clock.advance(30)
        results: list[object] = []

        async def one() -> None:
            try:
                results.append(await place(caller))
            except CallError as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
        await caller.aclose()
        assert sum(isinstance(r, str) for r in results) == 1
        assert sum(isinstance(r, ProviderUnavailableError) for r in results) == 2
        assert len(slow.create_requests) == 2 and caller.state == "closed"


async def test_a_cancelled_trial_lets_the_next_call_try(clock: Monotonic) -> None:
    with SignalWireDouble(create_delay=0.5) as slow:
        caller = caller_for(slow, failure_threshold=1, cooldown=30, clock=clock)
        slow.fail_next(500)
        with pytest.raises(CallError):
            await place(caller)
        clock.advance(30)
        with anyio.move_on_after(0.1):  # the page gave up (or the user left) during the trial
            await place(caller)
        assert caller.state == "half_open"
        slow.create_delay = 0
        assert await place(caller)  # not stuck: this call is the trial
        await caller.aclose()
        assert caller.state == "closed"


async def test_a_failing_state_hook_is_logged_and_ignored(
    double: SignalWireDouble, clock: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(state: str) -> None:
        raise RuntimeError("metrics are down")

    caller = caller_for(double, failure_threshold=1, clock=clock, on_state_change=broken)
    double.fail_next(500)
    with pytest.raises(CallError) as info:
        await place(caller)
    await caller.aclose()
    assert info.value.status == 500 and caller.state == "open"
    assert any("on_state_change failed" in r.getMessage() for r in caplog.records)


# -- through the middleware --------------------------------------------------------------------------------


def test_with_the_breaker_open_the_page_answers_at_once_without_calling(
    harness_factory: Callable[..., Harness],
) -> None:
    double = SignalWireDouble().start()
    caller = SignalWireCaller(
        space=double.url, project=double.project, token=double.token, failure_threshold=1, cooldown=300
    )
    h = harness_factory(double=double, caller=caller)
    double.fail_next(500)
    with h.client("alice") as alice:
        assert alice.get("/account").status_code == 503
    assert len(double.create_requests) == 1 and caller.state == "open"
    with h.client("bob") as bob:
        start = time.monotonic()
        r = bob.get("/account")
        elapsed = time.monotonic() - start
    assert r.status_code == 503 and "Calls are unavailable right now" in r.text
    assert 0 < int(r.headers["retry-after"]) <= 300
    assert elapsed < 1.0
    assert len(double.create_requests) == 1 and double.calls == []  # nothing reached the provider
    assert [e.kind for e in h.events].count("call_failed") == 2

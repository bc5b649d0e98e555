"""OpenTelemetry: the metrics and spans of a real flow through the SignalWire double, read with
the SDK's in-memory reader and exporter; and nothing at all without opentelemetry-api."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is a test dependency")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voice2fa_middleware import Identity, SignalWireCaller
from voice2fa_middleware._core.audit import AuditEvent
from voice2fa_middleware._core.telemetry import INSTRUMENTS, Telemetry
from voice2fa_middleware.testing import SignalWireDouble

from .conftest import Harness, csrf_of, wrong_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Otel:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """metric name -> [(attributes, value or histogram count)]."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for p in metric.data.data_points:
                        value = getattr(p, "value", None)
                        found.setdefault(metric.name, []).append((dict(p.attributes or {}), value or p.count))
        return found

    def total(self, name: str, **attributes: Any) -> float:
        return sum(v for a, v in self.points().get(name, []) if all(a.get(k) == want for k, want in attributes.items()))


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.meters.shutdown()
    o.tracers.shutdown()


def _harness(factory: Callable[..., Harness], otel: Otel, **kw: Any) -> Harness:
    return factory(middleware={"meter_provider": otel.meters, "tracer_provider": otel.tracers}, **kw)


def test_a_whole_flow_reports_its_metrics_and_spans(harness_factory: Callable[..., Harness], otel: Otel) -> None:
    h = _harness(harness_factory, otel)
    with h.client() as c:
        traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
        r = c.get("/account", headers={"traceparent": traceparent})
        assert r.status_code == 303
        page = c.get(r.headers["location"])
        code = h.double.wait_for_code()
        csrf = csrf_of(page.text)
        assert h.verify(c, wrong_for(code), csrf).status_code == 400
        h.clock.offset += 12
        assert h.verify(c, code, csrf).status_code == 303
        deadline = time.monotonic() + 5
        while not otel.total("voice2fa.calls.outcomes") and time.monotonic() < deadline:
            time.sleep(0.05)  # the carrier's last status callback
        before = otel.points()
        for _ in range(20):  # verified and unprotected requests record nothing
            assert c.get("/account").status_code == 200
            assert c.get("/").status_code == 200
        assert otel.points() == before
    assert otel.total("voice2fa.challenges.started", **{"voice2fa.country": "US"}) == 1
    assert otel.total("voice2fa.calls.placed", **{"voice2fa.country": "US"}) == 1
    assert otel.total("voice2fa.verifications", **{"voice2fa.result": "failed"}) == 1
    assert otel.total("voice2fa.verifications", **{"voice2fa.result": "succeeded"}) == 1
    assert otel.total("voice2fa.calls.outcomes", **{"voice2fa.call.status": "completed"}) == 1
    assert otel.total("voice2fa.provider.create_call.duration", **{"voice2fa.outcome": "placed"}) == 1
    [(_attrs, count)] = otel.points()["voice2fa.verify.duration"]
    assert count == 1
    sums = [
        p.sum
        for rm in otel.reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "voice2fa.verify.duration"
        for p in m.data.data_points
    ]
    # The fake clock moved 12 s between the call and the code; real time adds what the flow took
    # (seconds, on a busy machine).
    assert sums and 12 <= sums[0] < 20
    # Bounded attributes: no user id, phone number or client address anywhere.
    for name, points in otel.points().items():
        assert name in INSTRUMENTS
        for attributes, _value in points:
            flat = " ".join(f"{k}={v}" for k, v in attributes.items())
            assert "alice" not in flat and "+1" not in flat and "127.0.0.1" not in flat, flat
    spans = {s.name: s for s in otel.spans.get_finished_spans()}
    create = spans["voice2fa.create_call"]
    assert f"{create.context.trace_id:032x}" == TRACE_ID  # joined to the request's trace
    assert create.attributes is not None and create.attributes["country"] == "US"
    assert "voice2fa.webhook.laml" in spans and "voice2fa.webhook.status" in spans


def test_refusals_lockouts_and_store_errors_are_counted(harness_factory: Callable[..., Harness], otel: Otel) -> None:
    h = _harness(harness_factory, otel, calls_per_user_per_hour=1, lockout_failures=2, max_attempts=5)

    with h.client() as c:
        csrf, code = h.challenge(c)
        for _ in range(2):
            h.verify(c, wrong_for(code), csrf)
    assert otel.total("voice2fa.lockouts") == 1
    with h.client() as c:
        assert c.get("/account").status_code == 429  # locked out: no call
    assert otel.total("voice2fa.calls.refused", **{"voice2fa.reason": "lockout"}) == 1
    with h.client("bob") as bob:
        csrf, code = h.challenge(bob)
        r = bob.post("/voice2fa/resend", data={"csrf_token": csrf})
        assert r.status_code == 429
    assert otel.total("voice2fa.calls.refused", **{"voice2fa.reason": "cooldown"}) == 1
    h.clock.offset += 120
    with h.client("bob") as bob:
        page = bob.get("/account")
        assert page.status_code == 303
        csrf = csrf_of(bob.get(page.headers["location"]).text)
        assert bob.post("/voice2fa/resend", data={"csrf_token": csrf}).status_code == 429  # budget spent
    assert otel.total("voice2fa.calls.refused", **{"voice2fa.reason": "budget"}) == 1
    assert otel.total("voice2fa.budgets.exhausted", **{"voice2fa.budget": "user"}) == 1
    assert otel.total("voice2fa.store.errors") == 0


def test_store_errors_and_a_failed_call_are_counted(harness_factory: Callable[..., Harness], otel: Otel) -> None:
    double = SignalWireDouble().start()
    h = _harness(harness_factory, otel, double=double)
    double.fail_next(400, shape="code")
    with h.client() as c:
        assert c.get("/account").status_code == 502
    assert otel.total("voice2fa.calls.failed", **{"voice2fa.provider.status": 400}) == 1
    assert otel.total("voice2fa.provider.create_call.duration", **{"voice2fa.outcome": "failed"}) == 1


def test_the_circuit_breaker_reports_its_changes(harness_factory: Callable[..., Harness], otel: Otel) -> None:
    double = SignalWireDouble().start()
    big = {"calls_per_user_per_hour": 100, "calls_per_phone_per_hour": 100, "calls_per_client_per_hour": 100}
    h = _harness(harness_factory, otel, double=double, **big)
    assert "caller" not in h.middleware_kwargs  # the default caller, made from the settings
    events: list[AuditEvent] = h.events
    double.fail_next(500, times=5)
    for _ in range(5):  # five failures in a row open the breaker
        with h.client("alice") as c:
            assert c.get("/account").status_code == 503
    with h.client("bob") as c:
        r = c.get("/account")
        assert r.status_code == 503 and "unavailable" in r.text
    deadline = time.monotonic() + 5
    while not any(e.kind == "provider_circuit" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.detail["state"] for e in events if e.kind == "provider_circuit"] == ["open"]
    assert otel.total("voice2fa.provider.circuit", **{"voice2fa.state": "open"}) == 1
    assert len(double.create_requests) == 5


def test_audit_records_carry_their_fields_for_json_formatters(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="voice2fa.audit"), harness.client() as c:
        csrf, code = harness.challenge(c)
        assert harness.verify(c, code, csrf).status_code == 303
    by_kind = {r.voice2fa_kind: r for r in caplog.records if hasattr(r, "voice2fa_kind")}  # type: ignore[attr-defined]
    placed = by_kind["call_placed"]
    assert placed.voice2fa_user_id == "alice" and placed.voice2fa_client == "127.0.0.1"  # type: ignore[attr-defined]
    assert placed.voice2fa_country == "US" and placed.voice2fa_call_sid  # type: ignore[attr-defined]
    assert placed.voice2fa_challenge == by_kind["verified"].voice2fa_challenge  # type: ignore[attr-defined]
    for record in caplog.records:
        text = record.getMessage() + " ".join(str(v) for v in vars(record).values())
        assert code not in text and "+12025550143" not in text  # never a code or a full number


def test_without_opentelemetry_nothing_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    telemetry = Telemetry()
    assert telemetry.enabled is False
    telemetry.on_event(AuditEvent("verified", "alice", None, 0.0, {}))
    telemetry.add("voice2fa.lockouts")
    telemetry.record("voice2fa.verify.duration", 1.0)
    with telemetry.span("x", {}, "client"):
        pass


def test_signalwire_caller_is_the_default_and_reports_to_the_context() -> None:
    from voice2fa_middleware import Voice2FASettings
    from voice2fa_middleware._flow.runtime import default_caller

    seen: list[str] = []
    s = Voice2FASettings(
        secret_key="x" * 32,
        signalwire_space="example.signalwire.com",
        signalwire_project="p",
        signalwire_token="t",
        from_number="+12025550100",
        public_url="https://example.com",
    )
    caller = default_caller(s, seen.append)
    assert isinstance(caller, SignalWireCaller)
    caller._breaker.notify("open")  # type: ignore[attr-defined]
    assert seen == ["open"]


def test_phone_enrolment_is_counted(harness_factory: Callable[..., Harness], otel: Otel) -> None:
    phones: dict[str, str | None] = {"nina": None, "omar": None}

    async def identify(conn: Any) -> Identity | None:
        user = conn.cookies.get("test_user")
        return Identity(user, phones[user]) if user in phones else None

    async def save(user_id: str, e164: str) -> None:
        phones[user_id] = e164

    middleware = {"meter_provider": otel.meters, "identify": identify, "on_phone_confirmed": save}
    h = harness_factory(middleware=middleware, shared_phone_accounts=2)
    for n, user in enumerate(["nina", "omar"]):
        with h.client(user) as c:
            page = c.get("/voice2fa/phone")
            posted = c.post("/voice2fa/phone", data={"phone": "+12025550170", "csrf_token": csrf_of(page.text)})
            assert posted.status_code == 303
            h.double.wait_for_calls(n + 1)
            verify = c.get(posted.headers["location"])
            form = {"code": h.double.calls[-1].code(), "csrf_token": csrf_of(verify.text)}
            assert c.post("/voice2fa/verify", data=form).status_code == 303
    assert otel.total("voice2fa.phones.confirmed", **{"voice2fa.country": "US"}) == 2
    assert otel.total("voice2fa.phones.shared", **{"voice2fa.country": "US"}) == 1


def test_reported_and_machine_calls_are_counted(harness_factory: Callable[..., Harness], otel: Otel) -> None:
    """The call itself: 9 ("not me") and a voicemail answering each have their metric."""
    double = SignalWireDouble(presses=("9",)).start()
    h = _harness(harness_factory, otel, double=double)
    with h.client() as c:
        assert c.get("/account").status_code == 303
        double.wait_for_calls(1)
    assert otel.total("voice2fa.calls.reported", **{"voice2fa.country": "US"}) == 1
    double.answered_by = "machine_end_beep"
    with h.client(user="bob") as c:
        assert c.get("/account").status_code == 303
        double.wait_for_calls(2)
    assert otel.total("voice2fa.calls.machine") == 1

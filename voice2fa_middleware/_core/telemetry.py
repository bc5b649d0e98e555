"""OpenTelemetry metrics and spans, from the audit events and two timings.

With the ``otel`` extra (``opentelemetry-api``) the middleware reports through the global
meter and tracer providers (or the ones passed to it); without it every method here returns
at once. Nothing is recorded on an unprotected or verified request: only challenges, calls,
webhooks and verifications report. Attributes have bounded values (reasons, statuses, ISO
countries): never a user id, a phone number, a client address or a code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from .audit import AuditEvent

logger = logging.getLogger("voice2fa")

NAME = "voice2fa_middleware"

# metric name: (instrument kind, unit, description). The README's table lists the same.
INSTRUMENTS = {
    "voice2fa.challenges.started": ("counter", "{challenge}", "Challenges started (a call is asked for)"),
    "voice2fa.calls.placed": ("counter", "{call}", "Calls the provider accepted"),
    "voice2fa.calls.failed": ("counter", "{call}", "Calls the provider refused or failed to answer for"),
    "voice2fa.calls.refused": ("counter", "{call}", "Calls not placed: cooldown, budget, country, phone, lockout"),
    "voice2fa.calls.outcomes": ("counter", "{call}", "How calls ended, from the provider's status callbacks"),
    "voice2fa.calls.reported": ("counter", "{call}", "Calls the person called reported (pressed 9: not me)"),
    "voice2fa.calls.machine": ("counter", "{call}", "Calls answering machine detection found a machine answered"),
    "voice2fa.verifications": ("counter", "{verification}", "Codes submitted: succeeded or failed"),
    "voice2fa.lockouts": ("counter", "{lockout}", "Users locked out after too many wrong codes"),
    "voice2fa.budgets.exhausted": ("counter", "{budget}", "Calls refused because a budget was spent, by budget"),
    "voice2fa.verify.duration": ("histogram", "s", "From the challenge's start to the right code"),
    "voice2fa.provider.create_call.duration": ("histogram", "s", "Create Call requests to the provider"),
    "voice2fa.provider.circuit": ("counter", "{change}", "Circuit breaker state changes, by new state"),
    "voice2fa.store.errors": ("counter", "{error}", "Store failures and timeouts (requests failed closed)"),
    "voice2fa.phones.confirmed": ("counter", "{phone}", "Numbers confirmed on the phone page and saved by the app"),
    "voice2fa.phones.shared": ("counter", "{phone}", "Numbers confirmed by many accounts within a day"),
}

_NO_SPAN = contextlib.nullcontext()
_FINAL = {"completed", "busy", "no-answer", "failed", "canceled"}


def _refusal(reason: str) -> str:
    if reason == "rate_limited":
        return "budget"
    if reason == "phone_country":
        return "country"
    if reason.startswith("phone_"):
        return "phone"
    return reason  # cooldown, lockout


class Telemetry:
    """The middleware's instruments and tracer (no-ops without ``opentelemetry-api``)."""

    def __init__(self, *, meter_provider: Any = None, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import metrics, propagate, trace
        except ImportError:
            self.enabled = False
            return
        self.enabled = True
        try:
            from importlib.metadata import version

            ours = version("voice2fa-middleware")
        except Exception:  # pragma: no cover - running from a checkout without metadata
            ours = ""
        meter = metrics.get_meter(NAME, ours, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(NAME, ours, tracer_provider=tracer_provider)
        # Until the app sets a tracer provider, spans are no-ops: skip their set-up then.
        self._tracer_given = tracer_provider is not None
        self._trace = trace
        self._propagate = propagate
        self._instruments: dict[str, Any] = {}
        for name, (kind, unit, description) in INSTRUMENTS.items():
            make = meter.create_histogram if kind == "histogram" else meter.create_counter
            self._instruments[name] = make(name, unit=unit, description=description)

    def add(self, name: str, attributes: Mapping[str, str | int] | None = None) -> None:
        if self.enabled:
            self._instruments[name].add(1, attributes)

    def record(self, name: str, value: float, attributes: Mapping[str, str | int] | None = None) -> None:
        if self.enabled:
            self._instruments[name].record(value, attributes)

    def on_event(self, event: AuditEvent) -> None:
        """The metric an audit event stands for, if any."""
        if not self.enabled:
            return
        detail = event.detail
        country = {"voice2fa.country": str(detail["country"])} if detail.get("country") else {}
        kind = event.kind
        if kind == "challenge_created":
            self.add("voice2fa.challenges.started", country)
        elif kind == "call_placed":
            self.add("voice2fa.calls.placed", country)
        elif kind == "call_failed":
            attributes: dict[str, str | int] = {
                **country,
                "voice2fa.provider.status": int(detail.get("provider_status", 0)),
                "voice2fa.provider.code": str(detail.get("provider_code", "")),
                "voice2fa.reason": str(detail.get("reason", "maybe_placed" if detail.get("maybe_placed") else "error")),
            }
            self.add("voice2fa.calls.failed", attributes)
        elif kind == "call_refused":
            self.add("voice2fa.calls.refused", {**country, "voice2fa.reason": _refusal(str(detail.get("reason", "")))})
        elif kind == "call_status" and detail.get("status") == "machine":
            self.add("voice2fa.calls.machine")
        elif kind == "call_status" and detail.get("status") in _FINAL:
            self.add("voice2fa.calls.outcomes", {"voice2fa.call.status": str(detail["status"])})
        elif kind == "call_reported":
            self.add("voice2fa.calls.reported", country)
        elif kind == "verified":
            self.add("voice2fa.verifications", {"voice2fa.result": "succeeded"})
        elif kind == "failed":
            self.add("voice2fa.verifications", {"voice2fa.result": "failed"})
        elif kind == "locked":
            self.add("voice2fa.lockouts")
        elif kind == "budget_exhausted":
            self.add("voice2fa.budgets.exhausted", {"voice2fa.budget": str(detail.get("budget", ""))})
        elif kind == "provider_circuit":
            self.add("voice2fa.provider.circuit", {"voice2fa.state": str(detail.get("state", ""))})
        elif kind == "phone_confirmed":
            self.add("voice2fa.phones.confirmed", country)
        elif kind == "phone_shared":
            self.add("voice2fa.phones.shared", country)

    def span(
        self, name: str, headers: Mapping[str, str] | None, kind: str, **attributes: str | int
    ) -> contextlib.AbstractContextManager[None]:
        """A span around ``name``: a child of the current span (an instrumented app's request
        span), else of the trace the request's ``traceparent`` header names, if any."""
        if not self.enabled or (
            not self._tracer_given and isinstance(self._trace.get_tracer_provider(), self._trace.ProxyTracerProvider)
        ):
            return _NO_SPAN  # no tracer provider yet: spans would be no-ops
        return self._span(name, headers, kind, attributes)

    @contextlib.contextmanager
    def _span(
        self, name: str, headers: Mapping[str, str] | None, kind: str, attributes: Mapping[str, str | int]
    ) -> Iterator[None]:
        parent = None
        if not self._trace.get_current_span().get_span_context().is_valid and headers is not None:
            parent = self._propagate.extract(dict(headers))
        span_kind = self._trace.SpanKind.CLIENT if kind == "client" else self._trace.SpanKind.SERVER
        with self._tracer.start_as_current_span(name, context=parent, kind=span_kind, attributes=attributes):
            yield

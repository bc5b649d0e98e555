"""Audit events: what happened, to whom, from where and when; never a code (S18)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

EventKind = Literal[
    "challenge_created",
    "call_placed",
    "call_failed",
    "call_refused",
    "call_status",
    "call_reported",
    "verified",
    "failed",
    "locked",
    "budget_exhausted",
    "provider_circuit",
    "phone_confirmed",
    "phone_shared",
    "recovery_created",
    "recovery_used",
    "support",
]

logger = logging.getLogger("voice2fa.audit")

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def log_safe(value: object) -> str:
    """``value`` as text fit for one line of a text log (S32): control characters and other
    unprintable ones (newlines, ANSI escapes, U+2028) escaped as ``\\n``, ``\\x1b``, ``\\u2028``,
    and backslashes doubled so an escape cannot be faked. A user id ``"bob\\nverified user=alice"``
    would otherwise write a second, forged line. Printable text (the common case) is as is."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else _ESCAPES.get(c) or _escape(ord(c)) for c in text)


@dataclass(frozen=True)
class AuditEvent:
    """One audit record. ``detail`` holds reasons and statuses, never a code or token."""

    kind: EventKind
    user_id: str | None
    client: str | None
    time: float
    detail: Mapping[str, str | int | float] = field(default_factory=dict)


AuditHook = Callable[[AuditEvent], "Awaitable[None] | None"]


def log_fields(event: AuditEvent) -> dict[str, object]:
    """The event as attributes of its log record, for JSON formatters (python-json-logger,
    structlog's stdlib bridge): ``voice2fa_kind``, ``voice2fa_user_id``, ``voice2fa_client``,
    ``voice2fa_time`` and ``voice2fa_<detail>`` (reason, status, call_sid, budget, ...)."""
    fields: dict[str, object] = {
        "voice2fa_kind": event.kind,
        "voice2fa_user_id": event.user_id,
        "voice2fa_client": event.client,
        "voice2fa_time": event.time,
    }
    for key, value in event.detail.items():
        fields["voice2fa_" + key] = value
    return fields


async def emit(hook: AuditHook | None, event: AuditEvent) -> None:
    """Log the event on ``voice2fa.audit`` and hand it to the app's hook, if any.

    The text line escapes what users choose (``log_safe``: user id, client, details); the
    ``voice2fa_*`` fields keep the values as they are, for JSON formatters.
    A failing hook is logged and ignored: auditing must not break sign-in.
    """
    if logger.isEnabledFor(logging.INFO):  # the record's text and fields cost, even unlogged
        logger.info(
            "%s user=%s client=%s %s",
            event.kind,
            log_safe(event.user_id),
            log_safe(event.client),
            " ".join(f"{log_safe(k)}={log_safe(v)}" for k, v in event.detail.items()),
            extra=log_fields(event),
        )
    if hook is None:
        return
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("voice2fa audit hook failed for %s", event.kind)

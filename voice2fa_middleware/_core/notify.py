"""Notifications to the user: what an email (or SMS, or push) should tell them, mapped from
the audit events in one place.

NIST SP 800-63B-4 and ASVS 5.0 V6 ask that users hear about changes to how they sign in and
about signs of an attack: a phone number added or changed, recovery codes created or used, a
lockout, a new remembered device, a call they did not ask for. The app gives
``on_notify(user_id, kind, detail)`` (sync or async); the middleware calls it for each audit
event of ``NOTIFICATIONS``, never on the request's critical path: in a task of its own (a
sync hook in a worker thread), after the event; a failing hook is logged, never raised.

============================  =============================  ===========================
notification ``kind``         audit event                    ``detail``
============================  =============================  ===========================
``phone_changed``             ``phone_confirmed``            ``country``
``recovery_codes_created``    ``recovery_created``           ``codes``
``recovery_code_used``        ``recovery_used``              ``codes_left``
``locked``                    ``locked``                     ``failures``
``new_device``                ``verified`` with ``remembered``  ``client``
``call_reported``             ``call_reported``              as the event's
============================  =============================  ===========================
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.concurrency import run_in_threadpool

from .audit import AuditEvent, AuditHook
from .rules import is_async_callable

logger = logging.getLogger("voice2fa")

NotifyHook = Callable[[str, str, Mapping[str, "str | int | float"]], "Awaitable[None] | None"]

# Audit event kind -> notification kind. A str key: "call_reported" may come from a release
# that adds that event; it is notified as soon as it is emitted.
NOTIFICATIONS: dict[str, str] = {
    "phone_confirmed": "phone_changed",
    "recovery_created": "recovery_codes_created",
    "recovery_used": "recovery_code_used",
    "locked": "locked",
    "verified": "new_device",  # only with "remembered" in its detail
    "call_reported": "call_reported",
}


def notification_of(event: AuditEvent) -> tuple[str, dict[str, str | int | float]] | None:
    """The notification an audit event asks for (its kind and detail), or ``None``."""
    kind = NOTIFICATIONS.get(event.kind)
    if kind is None or event.user_id is None:
        return None
    if event.kind == "verified" and not event.detail.get("remembered"):
        return None
    detail = {k: v for k, v in event.detail.items() if k not in ("challenge", "remembered")}
    if event.client is not None:
        detail["client"] = event.client
    return kind, detail


class Notifier:
    """An audit hook that notifies (in the background) and then hands the event to the app's
    own audit hook, if any. Keeps its tasks until they end (asyncio keeps only weak ones)."""

    def __init__(self, hook: NotifyHook, then: AuditHook | None = None) -> None:
        self.hook = hook
        self.hook_is_async = is_async_callable(hook)
        self.then = then
        self.tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, event: AuditEvent) -> None:
        found = notification_of(event)
        if found is not None and event.user_id is not None:
            task = asyncio.get_running_loop().create_task(self._notify(event.user_id, *found))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.then is not None:
            result = self.then(event)
            if inspect.isawaitable(result):
                await result

    async def _notify(self, user_id: str, kind: str, detail: dict[str, str | int | float]) -> None:
        try:
            if self.hook_is_async:
                result = self.hook(user_id, kind, detail)
                if inspect.isawaitable(result):
                    await result
            else:
                await run_in_threadpool(self.hook, user_id, kind, detail)
        except Exception:
            logger.exception("voice2fa: on_notify failed for %s", kind)

    async def drain(self) -> None:
        """Wait for the notifications under way (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

"""The circuit breaker of ``SignalWireCaller``: after repeated provider failures, calls fail at
once for a while instead of each user waiting for a timeout."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._errors import ProviderUnavailableError

logger = logging.getLogger("voice2fa.caller")

StateHook = Callable[[str], None]
"""Told the circuit breaker's new state: ``"open"``, ``"half_open"`` or ``"closed"``."""


class Breaker:
    """``threshold`` failed attempts in a row open it for ``first_cooldown`` seconds; then one
    trial attempt (half-open) closes it on success, or opens it again for twice as long, up
    to ``cooldown``: a provider back after a short outage is tried again soon, one that stays
    down is not hammered. Per caller, per process."""

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float],
        notify: StateHook | None,
        first_cooldown: float | None = None,
    ) -> None:
        self.threshold, self.cooldown, self.clock, self.notify = threshold, cooldown, clock, notify
        self.first_cooldown = cooldown if first_cooldown is None else min(first_cooldown, cooldown)
        self.pause = self.first_cooldown  # how long the circuit stays open this time
        self.state, self.failures, self.opened_at, self.trial = "closed", 0, 0.0, False

    def paused_for(self) -> float:
        """Seconds left open (``0`` when closed, half-open, or the cool-down has passed)."""
        return max(0.0, self.opened_at + self.pause - self.clock()) if self.state == "open" else 0.0

    def admit(self) -> bool:
        """Let an attempt through (``True``: it is the half-open trial) or raise at once."""
        if self.state == "open":
            left = self.opened_at + self.pause - self.clock()
            if left > 0:
                raise ProviderUnavailableError("the provider is failing: calls are paused", retry_after=left)
            self._set("half_open")
        if self.state == "half_open":
            if self.trial:
                raise ProviderUnavailableError("the provider is failing: a trial call is under way", retry_after=1.0)
            self.trial = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.pause = self.first_cooldown
        if self.state != "closed":
            self._set("closed")

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open":  # the trial failed: longer this time
            self.pause = min(self.pause * 2, self.cooldown)
        if self.state == "half_open" or (self.state == "closed" and self.failures >= self.threshold):
            self.opened_at = self.clock()
            self._set("open")

    def _set(self, state: str) -> None:
        self.state = state
        if state == "open":
            message = f"SignalWire failed {self.failures} times in a row: calls fail at once for {self.pause:.0f} s"
        else:
            message = "trying SignalWire again with one call" if state == "half_open" else "SignalWire answers again"
        logger.log(logging.WARNING if state == "open" else logging.INFO, "voice2fa: %s (circuit %s)", message, state)
        if self.notify is not None:
            try:
                self.notify(state)
            except Exception:
                logger.exception("voice2fa: on_state_change failed for %s", state)

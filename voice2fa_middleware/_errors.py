"""The exceptions this package raises.

::

    Voice2FAError
    ├── ConfigurationError      unsafe or incomplete settings, raised at start-up
    ├── StoreError              the store failed or timed out (requests fail closed: 503)
    │   └── StoreFullError      the in-memory store holds its maximum of live challenges
    ├── CallError               the provider refused the call, errored or timed out
    │   └── ProviderUnavailableError  the provider kept failing: calls fail at once for a while
    └── MissingExtraError       an optional extra is not installed (says what to install)
"""

from __future__ import annotations


class Voice2FAError(Exception):
    """Base class of every exception raised by voice2fa_middleware."""


class ConfigurationError(Voice2FAError, ValueError):
    """Raised when the middleware is created with settings that are unsafe or incomplete."""


class StoreError(Voice2FAError):
    """Raised when the store cannot answer; the middleware turns it into a 503."""


class StoreFullError(StoreError):
    """Raised by ``MemoryStore`` when it already holds its maximum of live challenges."""


class CallError(Voice2FAError):
    """Raised by a caller when the call could not be placed.

    ``status`` is the provider's HTTP status (``None`` for a network error or timeout);
    ``code`` the provider's error code when it gave one. ``maybe_placed`` is true when the
    request may have reached the provider before the failure (a read timeout, a lost
    answer, a 5xx other than 503): the call may still ring, so do not place another at
    once. ``retry_after`` is the seconds the provider asked to wait (429, 503), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        maybe_placed: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.maybe_placed = maybe_placed
        self.retry_after = retry_after


class ProviderUnavailableError(CallError):
    """Raised at once, without contacting the provider, while a caller's circuit breaker is
    open (the provider failed several times in a row). ``retry_after`` is the seconds until
    the caller tries the provider again; no call was placed (``maybe_placed`` is false).
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


class MissingExtraError(Voice2FAError, ImportError):
    """Raised when a feature needs an optional extra that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'voice2fa-middleware[{extra}]'")

"""The exceptions this package raises.

::

    Voice2FAError
    ├── ConfigurationError      unsafe or incomplete settings, raised at start-up
    ├── StoreError              the store failed or timed out (requests fail closed: 503)
    │   └── StoreFullError      the in-memory store holds its maximum of live challenges
    ├── CallError               the provider refused the call, errored or timed out
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
    ``code`` the provider's error code when it gave one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class MissingExtraError(Voice2FAError, ImportError):
    """Raised when a feature needs an optional extra that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'voice2fa-middleware[{extra}]'")

"""Two-factor authentication by voice call for Starlette and FastAPI apps."""

from typing import TYPE_CHECKING

from ._audit import AuditEvent, AuditHook
from ._callers import Caller, ConsoleCaller, SignalWireCaller, SignalWireSDKCaller
from ._enrolment import PhoneConfirmed
from ._errors import (
    CallError,
    ConfigurationError,
    MissingExtraError,
    ProviderUnavailableError,
    StoreError,
    StoreFullError,
    Voice2FAError,
)
from ._handle import Voice2FAHandle
from ._i18n import Translations
from ._memory_store import MemoryStore
from ._middleware import Voice2FAMiddleware
from ._proofs import forget_verification
from ._protection import VerificationRequired, VoiceTwoFactor, require_voice_2fa
from ._rules import Identity, ProtectedPath
from ._settings import Voice2FASettings
from ._store import Bucket, Challenge, Reservation, Start, Store, challenge_id
from ._urls import safe_next
from ._webhooks import compute_signature, is_valid_signature

if TYPE_CHECKING:  # imported on first use at run time (needs the 'redis' extra); see __getattr__
    from ._redis_store import RedisStore

__version__ = "0.1.0"

__all__ = [
    "AuditEvent",
    "AuditHook",
    "Bucket",
    "CallError",
    "Caller",
    "Challenge",
    "ConfigurationError",
    "ConsoleCaller",
    "Identity",
    "MemoryStore",
    "MissingExtraError",
    "PhoneConfirmed",
    "ProtectedPath",
    "ProviderUnavailableError",
    "RedisStore",
    "Reservation",
    "SignalWireCaller",
    "SignalWireSDKCaller",
    "Start",
    "Store",
    "StoreError",
    "StoreFullError",
    "Translations",
    "VerificationRequired",
    "Voice2FAError",
    "Voice2FAHandle",
    "Voice2FAMiddleware",
    "Voice2FASettings",
    "VoiceTwoFactor",
    "challenge_id",
    "compute_signature",
    "forget_verification",
    "is_valid_signature",
    "require_voice_2fa",
    "safe_next",
]


def __getattr__(name: str) -> object:
    # RedisStore needs the 'redis' extra: imported on first use only.
    if name == "RedisStore":
        from ._redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module 'voice2fa_middleware' has no attribute {name!r}")

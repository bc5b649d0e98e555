"""Two-factor authentication by voice call for Starlette and FastAPI apps."""

from typing import TYPE_CHECKING

from ._core.audit import AuditEvent, AuditHook
from ._core.notify import NOTIFICATIONS, NotifyHook
from ._core.rules import Identity, ProtectedPath
from ._core.urls import safe_next
from ._errors import (
    CallError,
    ConfigurationError,
    MissingExtraError,
    ProviderUnavailableError,
    StoreError,
    StoreFullError,
    Voice2FAError,
)
from ._flow.enrolment import PhoneConfirmed
from ._handle import Voice2FAHandle
from ._i18n.catalogs import Translations
from ._middleware import Voice2FAMiddleware
from ._protection import VerificationRequired, VoiceTwoFactor, require_voice_2fa
from ._settings import Voice2FASettings
from ._stores.base import Bucket, Challenge, Reservation, Start, Store, challenge_id
from ._stores.memory import MemoryStore
from ._stores.recovery_codes import MemoryRecoveryCodes, RecoveryCodeStore
from ._support import Support, UserState
from ._telephony.callers import Caller, ConsoleCaller, SignalWireCaller, SignalWireSDKCaller
from ._telephony.signatures import compute_signature, is_valid_signature
from ._web.cookies import forget_verification

if TYPE_CHECKING:  # imported on first use at run time (needs the 'redis' extra); see __getattr__
    from ._stores.redis import RedisStore

__version__ = "0.1.0"

__all__ = [
    "NOTIFICATIONS",
    "AuditEvent",
    "AuditHook",
    "Bucket",
    "CallError",
    "Caller",
    "Challenge",
    "ConfigurationError",
    "ConsoleCaller",
    "Identity",
    "MemoryRecoveryCodes",
    "MemoryStore",
    "MissingExtraError",
    "NotifyHook",
    "PhoneConfirmed",
    "ProtectedPath",
    "ProviderUnavailableError",
    "RecoveryCodeStore",
    "RedisStore",
    "Reservation",
    "SignalWireCaller",
    "SignalWireSDKCaller",
    "Start",
    "Store",
    "StoreError",
    "StoreFullError",
    "Support",
    "Translations",
    "UserState",
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
        from ._stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'voice2fa_middleware' has no attribute {name!r}")

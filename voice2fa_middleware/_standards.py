"""The standards report: each requirement of NIST SP 800-63B-4 and OWASP ASVS 5.0 (V6,
authentication) that a voice-call second factor touches, judged from the configuration.

``voice2fa check --standards`` judges the settings the app would read; what only the app's
code decides (a ``RecoveryCodeStore``, an ``on_notify`` hook) is a warning there, "cannot
tell from settings". ``Voice2FAMiddleware.standards()`` knows both and judges them. Each row
names the setting (or argument) that fixes it. Section numbers are given as a pointer to
read the text, which is the authority.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ._core.urls import is_loopback_host
from ._settings import Voice2FASettings

Outcome = Literal["pass", "warn", "fail"]

# Both texts count six random digits as "about 20 bits" (log2(10**6) = 19.93).
_ENOUGH_BITS = 19.9
_MAX_FAILURES_PER_HOUR = 100  # NIST: at most 100 consecutive failed attempts
_MAX_LIFETIME = 600  # ten minutes


@dataclass(frozen=True)
class Row:
    id: str
    reference: str
    requirement: str
    outcome: Outcome
    detail: str
    fix: str
    """The setting or middleware argument that changes the outcome."""


def standards(
    s: Voice2FASettings, *, recovery_enabled: bool | None = None, notify_enabled: bool | None = None
) -> list[Row]:
    """The rows for settings ``s``. ``recovery_enabled`` and ``notify_enabled``: what the
    middleware was given (``None``: not known, judged "warn")."""
    rows: list[Row] = []

    def row(id: str, reference: str, requirement: str, ok: Outcome, detail: str, fix: str) -> None:
        rows.append(Row(id, reference, requirement, ok, detail, fix))

    row(
        "code_lifetime",
        "NIST SP 800-63B-4 3.1.3; ASVS 5.0 V6.5",
        "an out-of-band code lives at most 10 minutes",
        "pass" if s.code_ttl <= _MAX_LIFETIME else "fail",
        f"code_ttl = {s.code_ttl} s",
        "code_ttl",
    )
    bits = s.code_digits * math.log2(10)
    row(
        "code_entropy",
        "NIST SP 800-63B-4 3.1.3; ASVS 5.0 V6.5",
        "a code has at least 20 bits of entropy (6 random digits)",
        "pass" if bits >= _ENOUGH_BITS else "fail",
        f"code_digits = {s.code_digits}: {bits:.1f} bits, from secrets",
        "code_digits",
    )
    row(
        "single_use",
        "NIST SP 800-63B-4 3.1.3; ASVS 5.0 V6.5",
        "a code (and a recovery code) is used once",
        "pass",
        "consumed atomically by the store; a new call replaces the code",
        "-",
    )
    per_hour = s.lockout_failures * 3600 / s.lockout_window
    row(
        "attempt_limit",
        "NIST SP 800-63B-4 3.2.2; ASVS 5.0 V6.3, V6.6",
        "at most 100 failed attempts on one account (rate limiting)",
        "pass" if per_hour <= _MAX_FAILURES_PER_HOUR else "fail",
        f"lockout_failures = {s.lockout_failures} per lockout_window = {s.lockout_window} s "
        f"({per_hour:.0f} per hour), max_attempts = {s.max_attempts} per code",
        "lockout_failures, lockout_window",
    )
    row(
        "call_rate_limits",
        "ASVS 5.0 V6.6; toll fraud",
        "calls are rate limited per user, phone, client and deployment",
        "pass",
        f"{s.calls_per_user_per_hour}/user, {s.calls_per_phone_per_hour}/phone, "
        f"{s.calls_per_client_per_hour}/client, {s.calls_per_hour}/deployment per hour",
        "calls_per_*_per_hour",
    )
    row(
        "no_voip",
        "NIST SP 800-63B-4 3.1.3",
        "the phone is a device, not an internet (VoIP) number",
        "pass" if not s.allow_voip else "fail",
        ("VoIP ranges refused" + ("; VoIP lines by lookup too" if s.lookup_line_type else ""))
        if not s.allow_voip
        else "allow_voip = true: VoIP numbers are called",
        "allow_voip, lookup_line_type",
    )
    if s.recovery_codes == 0:
        alternative: tuple[Outcome, str] = ("fail", "recovery_codes = 0: no alternative to the phone")
    elif recovery_enabled is None:
        alternative = (
            "warn",
            "cannot tell from settings; pass recovery_codes= (a RecoveryCodeStore) to the middleware",
        )
    elif recovery_enabled:
        alternative = ("pass", f"recovery codes, {s.recovery_codes} a set")
    else:
        alternative = ("fail", "the middleware has no recovery_codes= store")
    row(
        "alternative",
        "NIST SP 800-63B-4 3.1.3 (PSTN: offer another authenticator); ASVS 5.0 V6.6",
        "users have an alternative to the phone (recovery codes)",
        alternative[0],
        alternative[1],
        "recovery_codes= (middleware), recovery_codes (setting)",
    )
    if notify_enabled is None:
        notify: tuple[Outcome, str] = ("warn", "cannot tell from settings; pass on_notify= to the middleware")
    else:
        notify = ("pass", "on_notify is set") if notify_enabled else ("fail", "no on_notify hook")
    row(
        "notifications",
        "NIST SP 800-63B-4 4.6 (notify of changes); ASVS 5.0 V6.3",
        "users are told of a new phone, recovery codes, lockouts and new devices",
        notify[0],
        notify[1],
        "on_notify= (middleware)",
    )
    row(
        "webhook_signatures",
        "ASVS 5.0 V6.6 (binding); provider webhooks",
        "the provider's webhooks are signed and checked",
        "pass",
        "always on (signing_key, else signalwire_token)",
        "signing_key",
    )
    row(
        "bound_to_request",
        "NIST SP 800-63B-4 3.1.3; ASVS 5.0 V6.6",
        "a code is bound to the sign-in that asked for it",
        "pass",
        "bound to the user, the phone called and Identity.version; the pending cookie carries a CSRF token",
        "-",
    )
    public = s.public_url or ""
    host = urlsplit(public).hostname if public else None
    if public.startswith("https://"):
        https: tuple[Outcome, str] = ("pass", public)
    elif public and host and is_loopback_host(host):
        https = ("warn", f"{public}: loopback, for development only")
    elif not public:
        https = ("warn", "VOICE2FA_PUBLIC_URL is not set: webhook URLs follow the bound address")
    else:
        https = ("fail", f"{public} is not https")
    row(
        "https",
        "ASVS 5.0 V12 (TLS); NIST SP 800-63B-4 (authenticated protected channel)",
        "the site and its webhooks are served over https",
        https[0],
        https[1],
        "public_url",
    )
    return rows

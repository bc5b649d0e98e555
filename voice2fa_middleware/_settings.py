"""Every knob of the middleware, in one place, with safe defaults."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.config import Config

from ._core.urls import is_loopback_host, safe_next, safe_root
from ._errors import ConfigurationError

logger = logging.getLogger("voice2fa")

_ENV_NAMES: dict[str, str] = {
    "signalwire_space": "SIGNALWIRE_SPACE",
    "signalwire_project": "SIGNALWIRE_PROJECT",
    "signalwire_token": "SIGNALWIRE_TOKEN",
    "from_number": "SIGNALWIRE_NUMBER",
    "signing_key": "SIGNALWIRE_SIGNING_KEY",
    "public_url": "VOICE2FA_PUBLIC_URL",
    "secret_key": "VOICE2FA_SECRET_KEY",
    "redis_url": "VOICE2FA_REDIS_URL",
}


def env_names() -> dict[str, str]:
    """Each setting and the environment variable it is read from."""
    return {
        f.name: _ENV_NAMES.get(f.name, "VOICE2FA_" + f.name.upper())
        for f in dataclasses.fields(Voice2FASettings)
        if f.init
    }


def _parse(kind: str, raw: str) -> Any:
    """An environment string as the setting's type (from its annotation)."""
    base = kind.replace(" | None", "")
    if base == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if base == "int":
        return int(raw)
    if base == "float":
        return float(raw)
    if base.startswith("Sequence[str]"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


@dataclass(frozen=True)
class Voice2FASettings:
    """Settings of :class:`Voice2FAMiddleware`. Build with keywords or :meth:`from_env`.

    Times are in seconds. Limits named ``..._per_hour`` count calls in a fixed one-hour
    window kept in the store, so they hold across workers and hosts.
    """

    # Secrets and provider
    secret_key: str | Sequence[str] | None = None
    """Signs cookies and keys code hashes. Several keys (newest first) rotate them."""
    signalwire_space: str | None = None
    """``example.signalwire.com`` (https), or a full URL such as ``http://127.0.0.1:8099``."""
    signalwire_project: str | None = None
    signalwire_token: str | None = None
    from_number: str | None = None
    """The caller id (E.164) the calls come from."""
    signing_key: str | None = None
    """Key of the webhook signatures; falls back to ``signalwire_token``."""
    public_url: str | None = None
    """Base URL the provider reaches the app at (``https://app.example.com``)."""
    redis_url: str | None = None

    # Routes and cookies
    prefix: str = "/voice2fa"
    cookie_path: str | None = None
    """Path of the middleware's cookies; ``None``: the app's root path (a ``Mount``'s prefix,
    uvicorn ``--root-path``), so apps under ``/a`` and ``/b`` on one host keep apart."""
    cookie_name_prefix: str = "voice2fa_"
    """Start of the cookie names (``voice2fa_verified``); after ``__Host-``/``__Secure-``."""
    cookie_secure: bool | None = None
    """``None``: Secure (and the ``__Host-`` prefix) when the request or public URL is https."""
    verified_max_age: int = 12 * 3600
    remember_days: int = 30
    """Lifetime of "remember this device" (an opt-in checkbox); 0 removes the option.
    Revoke every remembered device of a user by changing ``Identity.version``."""
    protected_no_store: Literal["html", "always", "never"] = "html"
    """``Cache-Control: no-store`` on the protected responses themselves (path rules and the
    decorator), so a shared computer's back button cannot show them after sign-out: on HTML
    responses (default), on every response, or never. An app's own Cache-Control is kept."""
    logout_url: str | None = None
    """Shown on the verify page as "Sign out" (a POST form), when set."""
    help_url: str | None = None
    """A help or contact page, linked from every page when set: a path here or an https URL."""
    trusted_proxies: Sequence[str] = ()
    """Addresses or networks whose ``X-Forwarded-For`` is believed."""

    # Codes and attempts (S1-S4)
    code_digits: int = 6
    code_ttl: int = 300
    max_attempts: int = 5
    lockout_failures: int = 10
    """Wrong codes per user in ``lockout_window`` before the user is locked out."""
    lockout_window: int = 3600

    # Calls (S8, S9)
    resend_cooldown: int = 30
    max_calls_per_challenge: int = 3
    calls_per_phone_per_hour: int = 5
    calls_per_user_per_hour: int = 5
    calls_per_client_per_hour: int = 10
    calls_per_hour: int = 1000
    """Deployment-wide, per hour: once for calls to phones their user verified before, and
    once for the rest (new users, new numbers), so a flood of new accounts cannot stop calls
    to users who verified before. Spend is at most twice this."""
    known_phone_days: int = 90
    """How long a verified (user, phone) pair keeps budgets of its own (S21)."""
    allowed_countries: Sequence[str] | None = None
    """ISO region codes; ``None``: the country of ``from_number`` (any, without one)."""
    call_timeout: float = 10.0
    allow_voip: bool = False
    """Call numbers that libphonenumber types as VoIP (internet phone numbers). Off by default:
    such a number is not bound to a device, so a call to it is a weak proof of possession
    (NIST SP 800-63B-4). Refused numbers get a clear message and a ``call_refused`` audit
    event with reason ``phone_voip``."""
    lookup_line_type: bool = False
    """Before the first call to a number, ask SignalWire's phone number lookup for its line type
    and refuse a ``voip`` line too (VoIP providers also hand out ordinary-looking numbers). Each
    lookup is billed; the answer is kept 30 days, a number the user verified is never looked
    up, and a failed lookup never blocks a call. Only with SignalWire, and ``allow_voip`` off."""

    # Phone enrolment: confirming a number with a call before the app saves it
    phoneless: Literal["enrol", "refuse", "allow"] | None = None
    """For a signed-in user without a phone (``Identity(user_id, None)``): the phone page ("enrol",
    default with ``on_phone_confirmed``), a 403 ("refuse", else), or pass ("allow": weaker)."""
    enrol_fresh_within: int = 300
    """A user who has a phone verifies it, this recently, before changing it (step-up)."""
    enrol_calls_per_user_per_hour: int = 3
    enrol_calls_per_client_per_hour: int = 5
    enrol_calls_per_phone_per_hour: int = 2
    shared_phone_accounts: int = 3
    """Accounts confirming one number within a day that raise a ``phone_shared`` audit event."""

    # Recovery codes: signing in without the phone
    recovery_codes: int = 10
    """Codes in a set of one-time recovery codes (``{prefix}/recovery``), the alternative a
    user has when the phone is lost or cannot be reached; 0 turns them off. The page exists
    only when the app passes ``recovery_codes=`` (a ``RecoveryCodeStore``) to the middleware."""

    # Speech
    voicemail_guard: bool = True
    """Ask for a key press before the code is spoken, so voicemail never records it."""
    voice: str | None = "woman"
    app_name: str = ""
    default_language: str = "en"

    # Robustness
    store_timeout: float = 2.0
    redis_max_connections: int = 100
    """Connections each worker's ``RedisStore`` may open to one Redis server. When all are in
    use, a request waits for one (up to ``store_timeout``) instead of failing: size it to the
    requests a worker serves at once that touch the store (challenges, codes, webhooks)."""
    max_body_size: int = 16 * 1024
    body_timeout: float = 10.0
    """Seconds a client has to send a whole form to the middleware's endpoints (else 408)."""
    memory_max_challenges: int = 100_000
    dev_pages: bool | None = None
    """Serve the console caller's dev phone page; ``None``: only with the console caller."""

    # Derived, filled in by __post_init__
    secret_keys: tuple[str, ...] = field(init=False, repr=False)
    ephemeral_secret: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        given = self.secret_key
        if isinstance(given, str):
            keys = tuple(k.strip() for k in given.split(",") if k.strip())
        else:
            keys = tuple(k for k in given or () if k)
        ephemeral = not keys
        if ephemeral:
            keys = (secrets.token_urlsafe(32),)
        object.__setattr__(self, "secret_keys", keys)
        object.__setattr__(self, "ephemeral_secret", ephemeral)
        self._validate()

    # -- derived values ------------------------------------------------------------------

    @property
    def uses_signalwire(self) -> bool:
        return bool(self.signalwire_space and self.signalwire_project and self.signalwire_token)

    @property
    def webhook_key(self) -> str:
        """The key webhook signatures are checked with."""
        if self.signing_key:
            return self.signing_key
        if self.signalwire_token:
            return self.signalwire_token
        # Console mode: the console caller signs with the same derived key.
        return "console:" + self.secret_keys[0]

    @property
    def space_url(self) -> str | None:
        if not self.signalwire_space:
            return None
        space = self.signalwire_space.rstrip("/")
        return space if "://" in space else f"https://{space}"

    @property
    def is_local(self) -> bool:
        """True when every URL in play is loopback: a laptop or a test."""
        hosts = [urlsplit(u).hostname for u in (self.public_url, self.space_url) if u]
        return all(is_loopback_host(h) for h in hosts)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        env_file: str | Path | None = ".env",
        **overrides: Any,
    ) -> Voice2FASettings:
        """Settings from the environment (and a ``.env`` file when present); keywords win.

        Every setting can come from ``VOICE2FA_<NAME>`` (``VOICE2FA_CODE_TTL=120``), and the
        provider's from the ``SIGNALWIRE_*`` names; lists are comma-separated, booleans
        ``true``/``false``. An unknown ``VOICE2FA_*`` name is refused, with the closest one.
        """
        env_path = env_file if env_file is not None and Path(env_file).is_file() else None
        source = os.environ if environ is None else environ
        config = Config(env_path, environ=source)
        names = env_names()
        known = set(names.values())
        given = {k for k in (*source.keys(), *config.file_values.keys()) if k.startswith("VOICE2FA_")}
        problems = []
        for unknown in sorted(given - known):
            close = difflib.get_close_matches(unknown, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{unknown} is not a setting{hint}")
        values: dict[str, Any] = {}
        for name, env_name in names.items():
            raw = config(env_name, default=None)
            if raw is None or raw == "":
                continue
            try:
                values[name] = _parse(_FIELD_TYPES[name], raw)
            except ValueError as exc:
                problems.append(f"{env_name}={raw!r}: {exc}")
        values.update(overrides)
        if not problems:
            return cls(**values)
        try:  # every problem at once: those of the values that could be read too
            cls(**values)
        except ConfigurationError as exc:
            problems += [line[2:] for line in str(exc).splitlines() if line.startswith("- ")]
        raise ConfigurationError("voice2fa: unsafe or incomplete settings:\n- " + "\n- ".join(problems))

    def replace(self, **changes: Any) -> Voice2FASettings:
        return dataclasses.replace(self, **changes)

    # -- validation --------------------------------------------------------------------

    def _validate(self) -> None:
        problems: list[str] = []
        if not 6 <= self.code_digits <= 10:
            problems.append("code_digits must be between 6 and 10")
        if not 30 <= self.code_ttl <= 600:
            problems.append("code_ttl must be between 30 and 600 seconds (ASVS 2.7.2)")
        if not 1 <= self.max_attempts <= 10:
            problems.append("max_attempts must be between 1 and 10")
        if not 1 <= self.lockout_failures < 100:
            problems.append("lockout_failures must be between 1 and 99 (NIST 800-63B 5.2.2)")
        if not self.prefix.startswith("/") or self.prefix.endswith("/") or len(self.prefix) < 2:
            problems.append("prefix must start with '/' and not end with '/'")
        if self.max_calls_per_challenge < 1 or self.resend_cooldown < 0:
            problems.append("max_calls_per_challenge must be >= 1 and resend_cooldown >= 0")
        for name in (
            *("calls_per_phone_per_hour", "calls_per_user_per_hour", "calls_per_client_per_hour", "calls_per_hour"),
            *("known_phone_days", "shared_phone_accounts", "enrol_calls_per_user_per_hour"),
            *("enrol_calls_per_client_per_hour", "enrol_calls_per_phone_per_hour", "redis_max_connections"),
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        provider = [self.signalwire_space, self.signalwire_project, self.signalwire_token]
        if any(provider) and not all(provider):
            problems.append(
                "SIGNALWIRE_SPACE, SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN go together: "
                "set all three, or none for the console caller"
            )
        if self.uses_signalwire and not self.from_number:
            problems.append("SIGNALWIRE_NUMBER (the caller id, E.164) is required with SignalWire")
        for name, url in (("VOICE2FA_PUBLIC_URL", self.public_url), ("SIGNALWIRE_SPACE", self.space_url)):
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"{name} must be an http(s) URL or a host name, not {url!r}")
            elif parts.scheme == "http" and not is_loopback_host(parts.hostname):
                problems.append(
                    f"{name} uses http:// for a host that is not loopback ({parts.hostname}); "
                    "use https:// (http is accepted only for local test doubles)"
                )
            elif name == "VOICE2FA_PUBLIC_URL" and (parts.query or parts.fragment or parts.path not in ("", "/")):
                problems.append(
                    f"VOICE2FA_PUBLIC_URL is the site's origin only ({parts.scheme}://{parts.netloc}), without "
                    "a path, query or fragment: the app's root path (a Mount, uvicorn --root-path) is added "
                    "to every URL by the middleware"
                )
        if not self.is_local:
            if self.ephemeral_secret:
                problems.append(
                    "VOICE2FA_SECRET_KEY is required outside loopback: cookies would not survive "
                    "a restart or be shared by workers"
                )
            elif any(len(k) < 16 for k in self.secret_keys):
                problems.append("VOICE2FA_SECRET_KEY must be at least 16 characters")
            if self.uses_signalwire and not self.public_url:
                problems.append(
                    "VOICE2FA_PUBLIC_URL is required with SignalWire: the URL (or tunnel) "
                    "SignalWire fetches the call script from"
                )
        if self.logout_url is not None and safe_next(self.logout_url) is None:
            problems.append("logout_url must be a path on this site, such as /logout")
        if self.help_url is not None and not (
            safe_next(self.help_url) or re.fullmatch(r"https://[\w.-]+(:\d+)?([/?#][!-\[\]-~]*)?", self.help_url, re.A)
        ):
            problems.append("help_url must be a path on this site (/help) or an https:// URL")
        if self.phoneless not in (None, "enrol", "refuse", "allow") or not 30 <= self.enrol_fresh_within <= 86400:
            problems.append("phoneless must be enrol, refuse or allow; enrol_fresh_within 30 to 86400 s")
        if self.protected_no_store not in ("html", "always", "never"):
            problems.append("protected_no_store must be 'html', 'always' or 'never'")
        if self.cookie_path is not None and (
            not self.cookie_path.startswith("/")
            or safe_next(self.cookie_path) is None
            or safe_root(self.cookie_path) != self.cookie_path.rstrip("/")
        ):
            problems.append("cookie_path must be a path such as /app")
        if not self.cookie_name_prefix or not all(c.isalnum() or c in "_-." for c in self.cookie_name_prefix):
            problems.append("cookie_name_prefix must be letters, digits, '_', '-' or '.'")
        if not 0 < self.body_timeout <= 120:
            problems.append("body_timeout must be more than 0 and at most 120 seconds")
        if not 0 <= self.recovery_codes <= 50:
            problems.append("recovery_codes must be between 0 (off) and 50")
        if self.remember_days < 0:
            problems.append("remember_days must be 0 (off) or more")
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                problems.append(f"trusted_proxies: {net!r} is not an address or network")
        if problems:
            raise ConfigurationError("voice2fa: unsafe or incomplete settings:\n- " + "\n- ".join(problems))


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(Voice2FASettings)}

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

_DEFAULT_PREFIX = "/voice2fa"

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
    if base.startswith("Mapping[str, str]"):
        pairs = [part.strip() for part in raw.split(",") if part.strip()]
        if not all("=" in pair for pair in pairs):
            raise ValueError("expected REGION=NUMBER pairs, such as FR=+33123456789,GB=+441234567890")
        return {k.strip().upper(): v.strip() for k, v in (pair.split("=", 1) for pair in pairs)}
    return raw


_SECONDS = ("_ttl", "_timeout", "_window", "_cooldown", "_max_age", "_within")


def expected(name: str) -> str:
    """What a setting's value must be, in words from its type: Python's own words
    ("invalid literal for int() with base 10") tell an operator nothing about the fix."""
    base = _FIELD_TYPES[name].replace(" | None", "")
    unit = " of days" if name.endswith("_days") else " of seconds" if name.endswith(_SECONDS) else ""
    if base == "bool":
        return "true or false"
    if base == "int":
        return "a whole number" + unit
    if base == "float":
        return "a number" + unit
    if base.startswith("Sequence[str]"):
        return "a comma-separated list"
    return "text"


def _close_setting(unknown: str, names: Mapping[str, str]) -> str | None:
    """The setting an unknown ``VOICE2FA_*`` name was probably meant to be, or ``None``.

    Names are compared without the ``VOICE2FA_`` they share (else any name looks close to
    any other: ``VOICE2FA_FOO`` to ``VOICE2FA_VOICE``), against the environment name and the
    field's name (``VOICE2FA_SIGNING_KEY`` is ``SIGNALWIRE_SIGNING_KEY``). Only a near miss (a
    typo, a letter swapped) or the start of exactly one name is suggested.
    """
    wanted = unknown.removeprefix("VOICE2FA_")
    candidates: dict[str, str] = {}
    for field_name, env_name in names.items():
        candidates[field_name.upper()] = env_name
        candidates[env_name.removeprefix("VOICE2FA_")] = env_name
    close = difflib.get_close_matches(wanted, sorted(candidates), n=1, cutoff=0.8)
    if close:
        return candidates[close[0]]
    starting = {env for key, env in candidates.items() if len(wanted) >= 4 and key.startswith(wanted)}
    return starting.pop() if len(starting) == 1 else None


def _problems_of(exc: ConfigurationError) -> list[str]:
    """The listed problems of a ``ConfigurationError`` raised by the validation."""
    return [line[2:] for line in str(exc).splitlines() if line.startswith("- ")] or [str(exc)]


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
    from_numbers: Mapping[str, str] = field(default_factory=dict)
    """Caller ids by the country called (ISO region code -> E.164; environment:
    ``FR=+33123456789,GB=+441234567890``): a call to a French number comes from the French
    number, which people answer more readily and which costs less; any other country's call
    from ``from_number``. Each must be a number of your SignalWire space."""
    signing_key: str | None = None
    """Key of the webhook signatures; falls back to ``signalwire_token``."""
    public_url: str | None = None
    """Base URL the provider reaches the app at (``https://app.example.com``)."""
    redis_url: str | None = None

    # Routes and cookies
    prefix: str = _DEFAULT_PREFIX
    cookie_path: str | None = None
    """Path of the middleware's cookies; ``None``: the app's root path (a ``Mount``'s prefix,
    uvicorn ``--root-path``), so apps under ``/a`` and ``/b`` on one host keep apart."""
    cookie_name_prefix: str | None = None
    """Start of the cookie names (``voice2fa_verified``); after ``__Host-``/``__Secure-``.
    ``None``: ``voice2fa_`` with the default ``prefix``, else one derived from ``prefix``
    (``/a/voice2fa``: ``voice2fa_a_voice2fa_``), so two apps on one host under different
    prefixes keep their cookies apart (``cookie_names_start`` is the one in use)."""
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
    """The app's sign-out, shown on our pages as "Sign out" when set; a successful response to
    it ends the verification on that browser (S22)."""
    logout_method: Literal["POST", "GET"] = "POST"
    """How the app's sign-out is reached: ``"POST"`` (a form on our pages) or ``"GET"`` (a
    link, for apps whose logout is a GET route, such as sqladmin's)."""
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
    """ISO 3166 alpha-2 region codes (``US``, ``GB``); ``None``: the country of ``from_number``
    (any, without one). An unknown code (``USA``, ``UK``) is refused at start-up."""
    call_timeout: float = 10.0
    calls_per_second: float = 1.0
    """Calls placed per second, across every worker and host (a token bucket in the store):
    SignalWire accepts 1 call per second per project unless you ask for more. Calls over the
    rate wait for their turn when it comes within ``call_timeout``, else are refused with a
    503 and ``Retry-After`` (nothing charged). ``0``: no pacing. The console caller is not paced."""
    answering_machine_detection: bool = True
    """Ask SignalWire to tell a voicemail from a person (asynchronous answering machine
    detection: the call is not delayed); a voicemail is hung up on without a word of the code,
    and the verify page says so. The provider bills detection per call (about $0.001 on
    SignalWire's price list: check yours); the key press before the code stays the defence."""
    reported_pause: int = 3600
    """After the user presses 9 in a call ("I did not try to sign in"), no call is placed to
    them for this many seconds, so someone who holds their password cannot keep their phone
    ringing. ``0``: no pause (the challenge is still cancelled and the event audited)."""
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
        object.__setattr__(self, "from_numbers", {k.upper(): v for k, v in dict(self.from_numbers or {}).items()})
        object.__setattr__(self, "secret_keys", keys)
        object.__setattr__(self, "ephemeral_secret", ephemeral)
        self._validate()

    # -- derived values ------------------------------------------------------------------

    @property
    def cookie_names_start(self) -> str:
        """The start of the cookie names in use: ``cookie_name_prefix`` when set, else
        ``voice2fa_`` for the default prefix (the names existing cookies have), else
        ``voice2fa_`` and the prefix's words joined by ``_`` (S34): without it, apps under
        ``/a/voice2fa`` and ``/b/voice2fa`` on one host, with no root path, share cookie names
        and path, and verifying on one overwrites the other's cookies."""
        if self.cookie_name_prefix is not None:
            return self.cookie_name_prefix
        if self.prefix == _DEFAULT_PREFIX:
            return "voice2fa_"
        return "voice2fa_" + "_".join(re.findall(r"[A-Za-z0-9]+", self.prefix)) + "_"

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
        values, problems, _failed = _read_env(environ, env_file)
        values.update(overrides)
        if not problems:
            return cls(**values)
        try:  # every problem at once: those of the values that could be read too
            cls(**values)
        except ConfigurationError as exc:
            problems += _problems_of(exc)
        raise ConfigurationError("voice2fa: unsafe or incomplete settings:\n- " + "\n- ".join(problems))

    def replace(self, **changes: Any) -> Voice2FASettings:
        return dataclasses.replace(self, **changes)

    # -- validation --------------------------------------------------------------------

    def _validate(self) -> None:
        problems: list[str] = []
        if not 6 <= self.code_digits <= 10:
            problems.append("code_digits must be between 6 and 10")
        if not 30 <= self.code_ttl <= 600:
            problems.append("code_ttl must be between 30 and 600 seconds (OWASP ASVS 5.0 6.5.5)")
        if not 1 <= self.max_attempts <= 10:
            problems.append("max_attempts must be between 1 and 10")
        if not 1 <= self.lockout_failures < 100:
            problems.append("lockout_failures must be between 1 and 99 (NIST SP 800-63B-4 3.2.2)")
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
        if not 0 <= self.calls_per_second <= 1000:
            problems.append("calls_per_second must be 0 (no pacing) to 1000")
        if not 0 <= self.reported_pause <= 86400:
            problems.append("reported_pause must be 0 (no pause) to 86400 seconds")
        for region, number in self.from_numbers.items():
            if not re.fullmatch(r"[A-Z]{2}", region) or not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
                problems.append(f"from_numbers: {region}={number} is not a region code and an E.164 number")
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
        if self.logout_method not in ("POST", "GET"):
            problems.append("logout_method must be 'POST' or 'GET'")
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
        names = self.cookie_name_prefix
        if names is not None and (not names or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in names)):
            problems.append("cookie_name_prefix must be letters, digits, '_', '-' or '.'")
        if not 0 < self.body_timeout <= 120:
            problems.append("body_timeout must be more than 0 and at most 120 seconds")
        if not 0 <= self.recovery_codes <= 50:
            problems.append("recovery_codes must be between 0 (off) and 50")
        if self.remember_days < 0:
            problems.append("remember_days must be 0 (off) or more")
        if self.allowed_countries is not None:
            problems += _region_problems(self.allowed_countries)
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                problems.append(f"trusted_proxies: {net!r} is not an address or network")
        if problems:
            raise ConfigurationError("voice2fa: unsafe or incomplete settings:\n- " + "\n- ".join(problems))


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(Voice2FASettings)}


def _region_problems(countries: Sequence[str]) -> list[str]:
    """``allowed_countries`` must name regions libphonenumber knows: a code it does not know
    (``USA``, ``UK``) would match no number, and every call would be refused at run time."""
    if isinstance(countries, str):
        return [f"allowed_countries is a list of region codes such as ['US', 'CA'], not the text {countries!r}"]
    import phonenumbers

    unknown = [c for c in countries if not isinstance(c, str) or c.upper() not in phonenumbers.SUPPORTED_REGIONS]
    if not unknown:
        return []
    return [
        "allowed_countries (VOICE2FA_ALLOWED_COUNTRIES) must be ISO 3166 alpha-2 region codes such as US, "
        f"GB or FR; not {', '.join(repr(c) for c in unknown)}"
    ]


def _read_env(
    environ: Mapping[str, str] | None, env_file: str | Path | None
) -> tuple[dict[str, Any], list[str], set[str]]:
    """The settings' values from the environment and ``.env``: the values that could be read,
    the problems (unknown names, values of the wrong type), and the fields that had one."""
    env_path = env_file if env_file is not None and Path(env_file).is_file() else None
    source = os.environ if environ is None else environ
    config = Config(env_path, environ=source)
    names = env_names()
    known = set(names.values())
    given = {k for k in (*source.keys(), *config.file_values.keys()) if k.startswith("VOICE2FA_")}
    problems = []
    for unknown in sorted(given - known):
        close = _close_setting(unknown, names)
        hint = f"; did you mean {close}?" if close else " (see the settings reference)"
        problems.append(f"{unknown} is not a known setting{hint}")
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for name, env_name in names.items():
        raw = config(env_name, default=None)
        if raw is None or raw == "":
            continue
        try:
            values[name] = _parse(_FIELD_TYPES[name], raw)
        except ValueError:
            failed.add(name)
            problems.append(f"{env_name} must be {expected(name)} (got {raw!r})")
    return values, problems, failed


@dataclass(frozen=True)
class EnvReport:
    """What ``voice2fa check`` needs when the settings have problems: every problem, and
    settings to go on checking with (the refused values left at their defaults)."""

    settings: Voice2FASettings
    problems: list[str]
    failed: frozenset[str]
    """The fields whose value was refused, or had to be set aside for the rest to be valid."""


def read_env_report(environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env") -> EnvReport:
    """Every problem of the settings in the environment, and the settings without the values
    that cause them, so the checks that do not need those values can still run.

    A value that is valid alone may clash with another (SignalWire credentials without a
    caller id): the values are set aside one at a time, each time the one whose absence leaves
    the fewest problems, until the rest is valid.
    """
    values, problems, failed = _read_env(environ, env_file)
    kept = dict(values)
    first = True
    while True:
        try:
            settings = Voice2FASettings(**kept)
            break
        except ConfigurationError as exc:
            left = _problems_of(exc)
        if first:
            problems += left
            first = False
        best: tuple[int, str] | None = None
        for name in kept:
            trial = {k: v for k, v in kept.items() if k != name}
            try:
                Voice2FASettings(**trial)
                count = 0
            except ConfigurationError as exc:
                count = len(_problems_of(exc))
            if count < len(left) and (best is None or count < best[0]):
                best = (count, name)
        if best is None:  # no single value is to blame: check with the defaults alone
            failed.update(kept)
            settings = Voice2FASettings()
            break
        failed.add(best[1])
        del kept[best[1]]
    return EnvReport(settings, problems, frozenset(failed))

"""``python -m voice2fa_middleware check`` (or ``voice2fa check``): is this deployment ready?

Reads the settings the app would read (the environment and ``.env``), reports every problem at
once, and exits 0 only when there is none. Checks: the settings themselves; the caller id; the
store (Redis reachable); SignalWire's credentials, with a read-only request to the
Compatibility API (the Account resource); whether the public URL answers from this host; and,
with ``--call +1...``, one real test call that reads a test phrase (the app must be running at
the public URL, which the carrier fetches the call's script from).

"Ready" means ready for production: a secret key, SignalWire's credentials and signing key, an
https public URL. ``--dev`` accepts a laptop's setup (the console caller, a random key) and
says "ready for development". A setting that is refused does not stop the other checks: only
those that need it are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import httpx

from . import _support as support
from ._core.crypto import Keyring, new_id
from ._endpoints.webhooks import CHECK_CALL
from ._errors import ConfigurationError
from ._settings import Voice2FASettings, env_names, read_env_report
from ._standards import standards
from ._telephony.callers import SignalWireCaller
from ._telephony.numbers import check_phone, region_of

Outcome = Literal["ok", "warning", "problem", "skipped"]

# The settings each check reads: a check is skipped (not run on a default in their place) when
# one of them was refused.
_NEEDS: dict[str, tuple[str, ...]] = {
    "secret key": ("secret_key",),
    "caller id": ("from_number", "allowed_countries"),
    "store": ("redis_url", "store_timeout", "redis_max_connections"),
    "signalwire": ("signalwire_space", "signalwire_project", "signalwire_token"),
    "signing key": ("signing_key", "signalwire_token"),
    "public url": ("public_url", "prefix"),
    "test call": ("signalwire_space", "signalwire_project", "signalwire_token", "from_number", "public_url"),
}


@dataclass(frozen=True)
class Finding:
    check: str
    outcome: Outcome
    message: str


async def _redis(s: Voice2FASettings) -> Finding:
    if not s.redis_url:
        return Finding("store", "ok", "MemoryStore (one process); set VOICE2FA_REDIS_URL for several workers")
    from ._stores.redis import RedisStore

    try:
        store = RedisStore(s.redis_url, timeout=s.store_timeout)
    except ValueError as exc:
        return Finding("store", "problem", f"VOICE2FA_REDIS_URL is not a usable Redis URL: {exc}")
    try:
        await store.ping()
        return Finding("store", "ok", "Redis answers")
    except Exception as exc:
        return Finding("store", "problem", f"Redis at VOICE2FA_REDIS_URL does not answer ({exc})")
    finally:
        await store.aclose()


async def _credentials(s: Voice2FASettings, client: httpx.AsyncClient, dev: bool) -> Finding:
    if not s.uses_signalwire:
        if dev:
            message = "no SignalWire credentials: the console caller is used (development)"
            return Finding("signalwire", "warning", message)
        return Finding(
            "signalwire",
            "problem",
            "no SignalWire credentials (SIGNALWIRE_SPACE, SIGNALWIRE_PROJECT, SIGNALWIRE_TOKEN, SIGNALWIRE_NUMBER): "
            "the console caller calls nobody",
        )
    url = f"{s.space_url}/api/laml/2010-04-01/Accounts/{s.signalwire_project}.json"
    try:
        r = await client.get(url, auth=(s.signalwire_project or "", s.signalwire_token or ""))
    except httpx.HTTPError as exc:
        return Finding("signalwire", "problem", f"SIGNALWIRE_SPACE does not answer ({type(exc).__name__})")
    if r.status_code in (401, 403):
        return Finding("signalwire", "problem", "SignalWire refused SIGNALWIRE_PROJECT / SIGNALWIRE_TOKEN")
    if r.status_code != 200:
        return Finding("signalwire", "problem", f"SignalWire answered {r.status_code} to a read-only request")
    return Finding("signalwire", "ok", "credentials accepted (read-only request to the Account)")


async def _public_url(s: Voice2FASettings, client: httpx.AsyncClient, dev: bool) -> Finding:
    if not s.public_url:
        if dev:
            message = "VOICE2FA_PUBLIC_URL is not set: webhooks follow the server address"
            return Finding("public url", "warning", message)
        return Finding(
            "public url", "problem", "VOICE2FA_PUBLIC_URL is not set: the https URL SignalWire reaches the app at"
        )
    if not dev and not s.public_url.startswith("https://"):
        return Finding("public url", "problem", f"VOICE2FA_PUBLIC_URL is {s.public_url}: production needs https://")
    url = s.public_url.rstrip("/") + s.prefix + "/static/voice2fa.css"
    try:
        r = await client.get(url)
    except httpx.HTTPError as exc:
        return Finding("public url", "warning", f"{url} does not answer from this host ({type(exc).__name__})")
    if r.status_code != 200:
        return Finding("public url", "warning", f"{url} answered {r.status_code}: is the app running there?")
    return Finding("public url", "ok", f"{s.public_url} serves the middleware")


async def _test_call(s: Voice2FASettings, to: str) -> Finding:
    if not s.uses_signalwire or not s.public_url:
        return Finding("test call", "problem", "a test call needs SignalWire credentials and VOICE2FA_PUBLIC_URL")
    phone = check_phone(to, None)
    if not phone.ok or phone.e164 is None:
        return Finding("test call", "problem", f"{to} is not a phone number that can be called")
    token = Keyring(s.secret_keys).call.dumps([CHECK_CALL, new_id(12)])
    base = s.public_url.rstrip("/") + s.prefix
    assert s.space_url and s.signalwire_project and s.signalwire_token
    caller = SignalWireCaller(
        space=s.space_url, project=s.signalwire_project, token=s.signalwire_token, timeout=s.call_timeout
    )
    try:
        sid = await caller.place_call(
            to=phone.e164,
            from_=s.from_number or "",
            laml_url=f"{base}/laml/{token}",
            status_url=f"{base}/status/{token}",
        )
    except Exception as exc:
        return Finding("test call", "problem", f"the call was not placed: {exc}")
    finally:
        await caller.aclose()
    return Finding("test call", "ok", f"call {sid} placed to {phone.e164}: it reads a test phrase")


def _secret_key(s: Voice2FASettings, dev: bool) -> Finding:
    if not s.ephemeral_secret:
        return Finding("secret key", "ok", f"set ({len(s.secret_keys)} key{'s' if len(s.secret_keys) > 1 else ''})")
    if dev:
        return Finding("secret key", "warning", "VOICE2FA_SECRET_KEY is not set: a random key per process")
    message = "VOICE2FA_SECRET_KEY is not set: with a random key per process, sign-ins do not survive a restart"
    return Finding("secret key", "problem", message)


def _signing_key(s: Voice2FASettings, dev: bool) -> Finding | None:
    if not s.uses_signalwire:
        return None  # the console caller signs its own webhooks; "signalwire" says the rest
    if s.signing_key:
        return Finding("signing key", "ok", "webhooks are checked with SIGNALWIRE_SIGNING_KEY")
    message = "SIGNALWIRE_SIGNING_KEY is not set: webhook signatures are checked with the API token"
    return Finding("signing key", "warning" if dev else "problem", message + " (the Space's Signing Key is needed)")


def _caller_id(s: Voice2FASettings) -> Finding | None:
    if not s.from_number:
        return None
    allowed = set(s.allowed_countries) if s.allowed_countries is not None else None
    number = check_phone(s.from_number, allowed)
    if number.ok:
        return Finding("caller id", "ok", f"{number.e164} ({region_of(s.from_number)})")
    return Finding("caller id", "problem", f"SIGNALWIRE_NUMBER {s.from_number!r}: {number.reason}")


async def run_checks(
    environ: dict[str, str] | None = None,
    *,
    env_file: str | None = ".env",
    call: str | None = None,
    dev: bool = False,
) -> list[Finding]:
    """Every finding about the settings the app would read.

    Settings that are refused are reported, and the checks that do not need them still run
    (one run lists every problem); ``dev`` makes what only production needs a warning.
    """
    report = read_env_report(environ, env_file=env_file)
    s = report.settings
    findings = [Finding("settings", "problem", line) for line in report.problems]
    if not findings:
        findings.append(Finding("settings", "ok", "valid"))
    names = env_names()

    def ready(check: str) -> bool:
        """Whether ``check`` can run; when a setting it reads was refused, it is skipped (not
        run on a default in its place, which would check something else)."""
        refused = [names[n] for n in _NEEDS[check] if n in report.failed]
        if refused:
            findings.append(Finding(check, "skipped", f"not checked: it needs {', '.join(refused)}, refused above"))
        return not refused

    def add(found: Finding | None) -> None:
        if found is not None:
            findings.append(found)

    if ready("secret key"):
        add(_secret_key(s, dev))
    if ready("caller id"):
        add(_caller_id(s))
    if ready("store"):
        add(await _redis(s))
    async with httpx.AsyncClient(timeout=10) as client:
        if ready("signalwire"):
            add(await _credentials(s, client, dev))
        if ready("signing key"):
            add(_signing_key(s, dev))
        if ready("public url"):
            add(await _public_url(s, client, dev))
    if call and ready("test call"):
        add(await _test_call(s, call))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice2fa", description="Checks a voice2fa-middleware deployment.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check the settings, the store, SignalWire and the public URL")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.add_argument("--call", metavar="+1...", help="also place one real test call to this number")
    check.add_argument("--env-file", help="the .env file to read, as the app does (default: .env, when present)")
    check.add_argument(
        "--dev", action="store_true", help="a development setup is enough (console caller, no secret key, http)"
    )
    check.add_argument("--standards", action="store_true", help="report on NIST SP 800-63B-4 and ASVS 5.0 V6 instead")
    support.add_arguments(commands.add_parser("support", help="support tasks on a user (needs VOICE2FA_REDIS_URL)"))
    args = parser.parse_args(argv)
    if args.command == "support":
        return support.command(args)
    if args.env_file is not None and not Path(args.env_file).is_file():
        # A file named on purpose and not there: checking without it would check something else.
        print(f"voice2fa check: {args.env_file}: no such file", file=sys.stderr)
        return 2
    env_file = args.env_file if args.env_file is not None else ".env"
    if args.standards:
        return standards_command(env_file, as_json=args.json)
    findings = asyncio.run(run_checks(env_file=env_file, call=args.call, dev=args.dev))
    failed = any(f.outcome == "problem" for f in findings)
    if args.json:
        print(json.dumps({"ok": not failed, "dev": args.dev, "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        marks = {"ok": "ok     ", "warning": "WARNING", "problem": "PROBLEM", "skipped": "SKIPPED"}
        for f in findings:
            print(f"{marks[f.outcome]}  {f.check}: {f.message}")
        if failed:
            problems = sum(1 for f in findings if f.outcome == "problem")
            verdict = f"not ready: {problems} problem{'s' if problems > 1 else ''} (listed above)"
            if not args.dev:
                verdict += "; --dev checks a development setup"
        else:
            verdict = "ready for development" if args.dev else "ready"
        print("voice2fa check: " + verdict)
    return 1 if failed else 0


def standards_command(env_file: str | None, *, as_json: bool) -> int:
    """``voice2fa check --standards``: one line per requirement; non-zero on any fail."""
    try:
        s = Voice2FASettings.from_env(env_file=env_file)
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 1
    rows = standards(s)
    failed = any(r.outcome == "fail" for r in rows)
    if as_json:
        print(json.dumps({"ok": not failed, "requirements": [asdict(r) for r in rows]}, indent=2))
    else:
        for r in rows:
            fix = f" [{r.fix}]" if r.fix != "-" else ""
            print(f"{r.outcome.upper():<4}  {r.id}: {r.requirement} ({r.reference}): {r.detail}{fix}")
        print("voice2fa check --standards: " + ("requirements failed" if failed else "no requirement failed"))
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

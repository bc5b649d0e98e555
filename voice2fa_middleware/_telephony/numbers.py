"""Phone numbers: parsed and normalised with ``phonenumbers`` (libphonenumber), then checked
against the countries and number types the deployment is willing to pay for (S9).

A number with an extension (``+1 202 555 0100 ext. 123``) is kept as E.164 plus the extension
in RFC 3966 style, ``+12025550100;ext=123``: one string that round-trips through
``check_phone`` (and through an app that saves it and returns it from ``identify()``). The
call goes to the E.164 part; the extension is sent as key presses once the call connects
(``send_digits``). Budgets count the E.164 part: extensions share their line's budgets.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

# Types a verification call may go to. Premium-rate, shared-cost, UAN, pager, personal
# (forwarding) and unknown numbers are refused: they are where toll fraud pays out.
ALLOWED_TYPES = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.VOIP,
    }
)


@dataclass(frozen=True)
class PhoneCheck:
    e164: str | None
    reason: str | None  # None when the number may be called

    @property
    def ok(self) -> bool:
        return self.reason is None


EXTENSION = ";ext="
# Digits an extension may have (libphonenumber reads up to 7 after "ext."; PBXs use 2 to 6).
_MAX_EXTENSION = 7


def split_extension(number: str) -> tuple[str, str]:
    """``"+12025550100;ext=123"`` -> ``("+12025550100", "123")``; no extension: ``(number, "")``."""
    line, _sep, extension = number.partition(EXTENSION)
    return line, extension


def line_of(number: str) -> str:
    """The number without its extension: what is dialled, and what budgets count."""
    return split_extension(number)[0]


def send_digits(number: str) -> str:
    """The key presses that reach the extension once the call connects: two seconds of
    waiting (``w`` is half a second) for the PBX's greeting, then the digits; ``""`` without one."""
    extension = split_extension(number)[1]
    return "wwww" + extension if extension else ""


@functools.lru_cache(maxsize=4096)
def region_of(number: str | None) -> str | None:
    """The ISO region of an E.164 number (``"+12025550143"`` -> ``"US"``), or ``None``.
    Cached: parsing costs ~100 us, and the numbers are the app's users' own."""
    if not number:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(line_of(number), None))
    except phonenumbers.NumberParseException:
        return None


def check_phone(
    raw: object,
    allowed_regions: Iterable[str] | None,
    default_region: str | None = None,
    *,
    allow_voip: bool = True,
) -> PhoneCheck:
    """Parse ``raw`` (E.164 expected; a national number of ``default_region`` when given, as a
    person types it) and decide whether a call may go to it.

    ``allow_voip=False`` refuses numbers libphonenumber types as VoIP (reason ``"voip"``):
    an internet number is not bound to a SIM or a line, so a call to it proves little (NIST
    SP 800-63B-4 asks verifiers to check that an out-of-band number is not VoIP). The
    default stays ``True`` for the callers that only normalise a number already accepted."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 32:
        return PhoneCheck(None, "invalid")
    regions = None if allowed_regions is None else frozenset(r.upper() for r in allowed_regions)
    return _check_phone(raw, regions, default_region, allow_voip)


def example_number(region: str | None) -> str:
    """A mobile number of ``region`` (default: the US) as people write it with its country code."""
    found = phonenumbers.example_number_for_type(region or "US", PhoneNumberType.MOBILE)
    if found is None:
        return "+1 201-555-0123"
    return phonenumbers.format_number(found, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@functools.lru_cache(maxsize=4096)
def _check_phone(
    raw: str, regions: frozenset[str] | None, default_region: str | None = None, allow_voip: bool = True
) -> PhoneCheck:
    # Cached: libphonenumber's validation costs ~100 us, and a user's number rarely changes.
    try:
        parsed = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException:
        return PhoneCheck(None, "invalid")
    if not phonenumbers.is_valid_number(parsed):
        return PhoneCheck(None, "invalid")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    extension = parsed.extension or ""
    if extension:
        if not extension.isascii() or not extension.isdigit() or len(extension) > _MAX_EXTENSION:
            return PhoneCheck(None, "invalid")
        e164 += EXTENSION + extension
    kind = phonenumbers.number_type(parsed)
    if kind not in ALLOWED_TYPES:
        return PhoneCheck(e164, "number_type")
    if kind == PhoneNumberType.VOIP and not allow_voip:
        return PhoneCheck(e164, "voip")
    if regions is not None:
        region = phonenumbers.region_code_for_number(parsed)
        if region not in regions:
            return PhoneCheck(e164, "country")
    return PhoneCheck(e164, None)


def mask(e164: str) -> str:
    """``+12025550143`` -> ``•••• 0143``: enough for the user to recognise their phone; with an
    extension, ``•••• 0100, ext. 123`` (which desk phone rings matters as much)."""
    line, extension = split_extension(e164)
    masked = "•••• " + line[-4:] if len(line) >= 4 else "••••"
    return f"{masked}, ext. {extension}" if extension else masked

"""Codes, keyed hashes and signed tokens.

Every secret comes from ``secrets``; every comparison is constant-time. Keys are derived
per purpose from the configured secret keys (newest first), so one secret never signs two
kinds of thing, and an old key keeps verifying until it is removed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.]+")
# A proof: the format version, when it was signed and the signature (itsdangerous's
# TimestampSigner, base64url). Exactly one spelling per token, so caches keyed by it hold:
# the signature's 20 bytes fill 27 characters with 2 bits to spare, which base64 decoding
# ignores, so its last character must leave them zero. (The time needs no such rule: the
# signature covers its text.)
_PROOF = re.compile(r"1\.[A-Za-z0-9_\-]{1,12}\.[A-Za-z0-9_\-]{26}[AEIMQUYcgkosw048]")


def generate_code(digits: int) -> str:
    """A uniformly random code of ``digits`` decimal digits, leading zeros kept (S1)."""
    return str(secrets.randbelow(10**digits)).zfill(digits)


# Recovery codes: base32's lower-case alphabet (no 0, 1, 8, 9: nothing to confuse with O, l, B, g).
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
RECOVERY_LENGTH = 10  # 50 bits, typed as two groups of five: "abcde-fghij"
_RECOVERY_TYPED = str.maketrans({"0": "o", "1": "l", "8": "b", " ": None, "-": None, ".": None, "\t": None})


def generate_recovery_code() -> str:
    """A one-time recovery code from ``secrets``: 10 base32 characters (50 bits), written in
    two groups of five (``abcde-fghij``) to be copied by hand without losing one's place."""
    chars = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return chars[:5] + "-" + chars[5:]


def normalize_recovery_code(typed: str) -> str | None:
    """A typed recovery code as it was generated (lower case, no separators), or ``None`` when
    it cannot be one. Upper case, spaces, dashes and the look-alikes 0, 1 and 8 are forgiven."""
    if len(typed) > 40:
        return None
    code = typed.strip().lower().translate(_RECOVERY_TYPED)
    if len(code) != RECOVERY_LENGTH or any(c not in RECOVERY_ALPHABET for c in code):
        return None
    return code


def new_id(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


# Compact JSON, as itsdangerous writes it; json.dumps(..., separators=...) would build a new
# encoder on every call, this one is built once.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


class _Signer(TimestampSigner):
    """itsdangerous's timestamp signer, each key's derived key computed once (it depends
    only on the secret key and the salt, both fixed for the signer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[str | bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = self._derived.get(secret_key)
        if key is None:
            key = self._derived[secret_key] = super().derive_key(secret_key)
        return key


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed serializer, cheaper for the small payloads signed on
    every challenge (the pending cookie, the call token): one signer per salt, kept, and no
    zlib attempt below 256 bytes of JSON (zlib's set-up costs more than the bytes it saves
    there). Tokens stay in itsdangerous's format: any of its serializers reads them, and
    this one reads compressed ones."""

    default_signer = _Signer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict[str | bytes | None, Any] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Any:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        text = compact_json(obj).encode()
        return base64_encode(text) if len(text) < 256 else super().dump_payload(obj)


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), b"voice2fa/" + purpose.encode(), hashlib.sha256).digest()


class Keyring:
    """Purpose-bound keys and signers derived from the secret keys (newest first)."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        self._secrets = tuple(secret_keys)
        self._code_keys = [_derive(s, "code") for s in self._secrets]
        self._tag_keys = [_derive(s, "tag") for s in self._secrets]
        self._recovery_keys = [_derive(s, "recovery") for s in self._secrets]
        # itsdangerous signs with the last key and verifies with all of them.
        self._oldest_first = list(reversed(self._secrets))
        self.pending = self.serializer("voice2fa.pending")
        self.resubmit = self.serializer("voice2fa.resubmit")
        self.call = self.serializer("voice2fa.call")

    def serializer(self, salt: str) -> URLSafeTimedSerializer:
        """A signer of timed payloads for one purpose (``salt``), under every key."""
        return _Serializer(self._oldest_first, salt=salt)

    # -- keyed hashes ----------------------------------------------------------------------

    def code_mac(self, challenge_id: str, code: str) -> str:
        """The stored form of a code: HMAC-SHA256 keyed with the newest key (S2)."""
        return self._mac(self._code_keys[0], challenge_id, code)

    def code_matches(self, challenge_id: str, code: str, stored_mac: str) -> bool:
        """Constant-time check of ``code`` against a stored MAC, under every key (S5)."""
        ok = False
        for key in self._code_keys:
            ok |= hmac.compare_digest(self._mac(key, challenge_id, code), stored_mac)
        return ok

    def recovery_macs(self, user_id: str, code: str) -> list[str]:
        """The stored forms of a recovery code (normalised) for ``user_id``, newest key first:
        a set saved before a key rotation still matches under the older key. Bound to the user,
        so one user's code is worthless for another."""
        return [self._mac(key, "recovery\x00" + user_id, code) for key in self._recovery_keys]

    def tag(self, kind: str, value: str) -> str:
        """An opaque, stable tag for a user id or a phone number (keys, cookies)."""
        return self._mac(self._tag_keys[0], kind, value)[:32]

    def tag_matches(self, kind: str, value: str, tag: str) -> bool:
        ok = False
        for key in self._tag_keys:
            ok |= hmac.compare_digest(self._mac(key, kind, value)[:32], tag)
        return ok

    @staticmethod
    def _mac(key: bytes, context: str, value: str) -> str:
        msg = context.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(key, msg, hashlib.sha256).hexdigest()

    # -- proofs of a verification ----------------------------------------------------------
    # The verified and remember cookies travel with every request, so they carry nothing but
    # a time and a signature ("1.<time>.<signature>", 36 characters): what they are bound to
    # (the kind of proof, and the user id, phone and version string) is signed without being
    # sent, as part of the key the signature is made with.

    def _proof_signer(self, kind: str, bound_to: Sequence[str | None]) -> TimestampSigner:
        fields = list(bound_to)
        if len(fields) == 4 and not fields[3]:
            # An Identity without a session binds as the three fields of earlier releases did:
            # their proofs still work.
            del fields[3]
        # JSON keeps the fields apart (no separator a user id could contain) and is ASCII.
        salt = f"voice2fa.{kind}\x00{json.dumps(fields)}"
        return TimestampSigner(self._oldest_first, salt=salt, key_derivation="hmac")

    def sign_proof(self, kind: str, bound_to: Sequence[str | None]) -> str:
        """A proof of ``kind`` ("verified", "remember") for these fields, signed now."""
        return self._proof_signer(kind, bound_to).sign("1").decode("ascii")

    def proof_time(self, kind: str, bound_to: Sequence[str | None], token: str, max_age: int) -> float | None:
        """When a good proof was signed (Unix time); ``None`` if bad, expired or not theirs."""
        if len(token) > 64 or not _PROOF.fullmatch(token):
            return None
        try:
            _, signed_at = self._proof_signer(kind, bound_to).unsign(token, max_age=max_age, return_timestamp=True)
        except (BadData, UnicodeError, ValueError):
            return None
        return signed_at.timestamp()

    # -- signed payloads ---------------------------------------------------------------

    @staticmethod
    def load(serializer: URLSafeTimedSerializer, token: str | None, max_age: int, max_length: int = 4096) -> Any:
        """The payload of a signed token, or ``None`` for a missing, bad, long or expired one."""
        # Only the characters itsdangerous emits: base64 decoding would skip others, making
        # endless spellings of one valid token.
        if not token or len(token) > max_length or not _TOKEN_CHARS.fullmatch(token):
            return None
        try:
            return serializer.loads(token, max_age=max_age)
        except (BadData, UnicodeError, ValueError):
            return None

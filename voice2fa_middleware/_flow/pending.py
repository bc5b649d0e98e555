"""The pending cookie: a challenge in progress in this browser, as a typed value.

It is signed (``Keyring.pending``, its own salt) and lives no longer than a code. On the
wire it keeps the short keys of earlier releases, so cookies set before an upgrade still
work: ``c`` challenge id, ``u`` user tag, ``x`` CSRF token, ``n`` where to go after, ``e``
present for an enrolment challenge.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._core.crypto import Keyring, new_id


@dataclass(frozen=True)
class Pending:
    """A challenge in progress, as the browser (or API client) carries it."""

    challenge_id: str
    user_tag: str
    """The keyed tag of the user the challenge was made for (``Keyring.tag("user", id)``)."""
    csrf_token: str
    """The token the verify form, resend and cancel must carry (S11)."""
    next_url: str
    """Where to go after verifying (a same-site path, bounded)."""
    enrolment: bool = False
    """An enrolment challenge: the right code confirms a new number."""

    @classmethod
    def new(cls, challenge_id: str, user_tag: str, next_url: str, *, enrolment: bool = False) -> Pending:
        """A pending value with a fresh CSRF token."""
        return cls(challenge_id, user_tag, new_id(), next_url, enrolment)

    def dumps(self, keys: Keyring) -> str:
        """The signed cookie value."""
        payload = {"c": self.challenge_id, "u": self.user_tag, "x": self.csrf_token, "n": self.next_url}
        if self.enrolment:
            payload["e"] = "1"
        return str(keys.pending.dumps(payload))

    @classmethod
    def loads(cls, keys: Keyring, token: str | None, max_age: int) -> Pending | None:
        """The pending value of a cookie, or ``None`` when it is missing, tampered with,
        expired or malformed (never an error: a bad cookie is no cookie)."""
        payload = keys.load(keys.pending, token, max_age)
        if not isinstance(payload, dict):
            return None
        fields = [payload.get(k) for k in ("c", "u", "x", "n")]
        if not all(isinstance(f, str) for f in fields):
            return None
        c, u, x, n = (str(f) for f in fields)
        return cls(c, u, x, n, bool(payload.get("e")))


# A form kept for resubmission travels in a cookie: bounded so that it stays well inside what
# browsers keep (4 KB, S20) once signed.
MAX_KEPT_FORM = 2048
MAX_KEPT_COOKIE = 3500  # characters of the signed value: the name and attributes fit in the rest


@dataclass(frozen=True)
class Resubmission:
    """A form a user submitted while their verification had expired: kept (in a signed
    cookie, no longer than a code) and offered again after verifying, never replayed
    without a click (S30)."""

    user_tag: str
    action: str
    """Where the form was posted (a same-site path with its query)."""
    fields: tuple[tuple[str, str], ...]
    back: str
    """The page the form was on (a same-site path), to go back to without submitting."""
    multipart: bool = False
    """Posted as ``multipart/form-data`` (text fields only): offered again the same way."""

    def dumps(self, keys: Keyring) -> str:
        data: list[object] = [self.user_tag, self.action, [list(f) for f in self.fields], self.back]
        if self.multipart:
            data.append(1)  # only when set: kept forms of the release before read as before
        return str(keys.resubmit.dumps(data))

    @classmethod
    def loads(cls, keys: Keyring, token: str | None, max_age: int) -> Resubmission | None:
        data = keys.load(keys.resubmit, token, max_age)
        if not (isinstance(data, list) and len(data) in (4, 5) and isinstance(data[2], list)):
            return None
        user_tag, action, fields, back = data[:4]
        multipart = len(data) == 5 and data[4] == 1
        pairs = [f for f in fields if isinstance(f, list) and len(f) == 2 and all(isinstance(x, str) for x in f)]
        if not all(isinstance(x, str) for x in (user_tag, action, back)) or len(pairs) != len(fields):
            return None
        return cls(user_tag, action, tuple((k, v) for k, v in pairs), back, multipart)

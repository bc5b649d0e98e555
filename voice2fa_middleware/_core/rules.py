"""Who is signed in, and which paths need a second factor: the leaf types.

``Identity`` is what the app's ``identify`` callable returns; ``PathRules`` decides, for a
path, which ``ProtectedPath`` applies. Nothing here imports the rest of the package.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from fnmatch import translate
from typing import NamedTuple

from starlette.requests import HTTPConnection
from starlette.types import Scope


class Identity(NamedTuple):
    """Who is signed in, as the app's ``identify`` callable tells it.

    ``phone`` is ``None`` for a signed-in user who has no phone yet (``settings.phoneless``
    decides what protected routes do for them); return ``None`` from ``identify`` only for
    nobody signed in. Proofs of a verification are bound to all three fields: a new phone
    (or a new ``version``, any string the app changes to revoke them, for example with the
    password) ends the verified cookies and remembered devices of the old one.
    """

    user_id: str
    phone: str | None
    version: str = ""
    session: str = ""
    """The app's sign-in session this request belongs to (a hash of its session token, or
    the time it was issued): when given, proofs are bound to it, so a new sign-in needs a new
    call even on the same browser, without configuring ``logout_url``. Never the token
    itself: any string that changes with each sign-in and that nobody can guess from it."""


IdentifyResult = (
    Identity | tuple[str, str | None] | tuple[str, str | None, str] | tuple[str, str | None, str, str] | None
)
Identify = Callable[[HTTPConnection], IdentifyResult | Awaitable[IdentifyResult]]


@dataclass(frozen=True)
class ProtectedPath:
    """A path pattern that requires a second factor.

    ``"/account"`` protects ``/account`` and everything below it. Shell wildcards match with
    ``fnmatch`` rules, where ``*`` spans slashes too: ``"/admin/*/edit"`` protects
    ``/admin/1/edit`` and ``/admin/a/b/edit``. A pattern ending in ``/*`` also protects its
    base: ``"/admin/*"`` protects ``/admin`` as well as everything below it (S24). Patterns
    match the path only: one that looks like it has a query string (``"/a?tab=x"``) is
    refused. ``fresh_within`` (seconds) asks for a verification no older than that (step-up,
    e.g. 300 for a payments page).
    """

    pattern: str
    fresh_within: int | None = None


class PathRules:
    """Compiled patterns: one regex per freshness, so a miss costs a single match."""

    def __init__(self, rules: Iterable[str | ProtectedPath]) -> None:
        self.rules = [r if isinstance(r, ProtectedPath) else ProtectedPath(r) for r in rules]
        for rule in self.rules:
            if "?" in rule.pattern and any(c in rule.pattern for c in "=&#"):
                raise ValueError(
                    f"protected path patterns match paths, not query strings: {rule.pattern!r}; "
                    f"protect {rule.pattern.split('?')[0]!r} instead"
                )
            if not rule.pattern.startswith("/"):
                raise ValueError(f"protected path patterns start with '/': {rule.pattern!r}")
        parts = [self._regex(r.pattern) for r in self.rules]
        # DOTALL: a path parameter may hold a newline, which "." must match too.
        self._any = re.compile("|".join(f"(?:{p})" for p in parts), re.S) if parts else None
        each = [(re.compile(p, re.S), r) for p, r in zip(parts, self.rules, strict=True)]
        # Strictest first (smallest fresh_within), so the first match is the one to apply.
        each.sort(key=lambda pr: pr[1].fresh_within if pr[1].fresh_within is not None else float("inf"))
        self._each = each
        # Plain prefixes ("/account") all with the same freshness, the common case, are
        # matched with two string operations instead of a regex: this runs on every request.
        self._plain: tuple[frozenset[str], tuple[str, ...], ProtectedPath] | None = None
        same_freshness = len({r.fresh_within for r in self.rules}) == 1
        if same_freshness and not any(c in r.pattern for r in self.rules for c in "*?["):
            bases = [r.pattern.rstrip("/") or "/" for r in self.rules]
            below = tuple(b + "/" for b in bases if b != "/")
            self._plain = (frozenset(bases), below, each[0][1])

    @staticmethod
    def _regex(pattern: str) -> str:
        if any(c in pattern for c in "*?["):
            if pattern.endswith("/*") and len(pattern) > 2:
                # "/admin/*" protects /admin itself too: what it seems to protect, it does.
                return f"(?:{translate(pattern)})|(?:{translate(pattern[:-2])})"
            return translate(pattern)
        base = re.escape(pattern.rstrip("/") or "/")
        return base + r"\Z" if base == "/" else base + r"(?:/.*)?\Z"

    def match(self, path: str) -> ProtectedPath | None:
        """The strictest rule matching ``path`` (smallest ``fresh_within``), or ``None``.

        A path ending in a newline also counts as the path without it: Starlette's route
        regexes end in ``$``, which matches before a final newline, so ``/account%0A`` is
        served by the ``/account`` route and must be protected like it.
        """
        found = self._match(path)
        if path[-1:] == "\n":
            other = self._match(path[:-1])
            if found is None or (other is not None and _stricter(other, found)):
                found = other
        return found

    def _match(self, path: str) -> ProtectedPath | None:
        plain = self._plain
        if plain is not None:
            return plain[2] if path in plain[0] or path.startswith(plain[1]) else None
        if self._any is None or self._any.match(path) is None:
            return None
        if len(self._each) == 1:
            return self._each[0][1]
        return next(r for regex, r in self._each if regex.match(path))


def _stricter(a: ProtectedPath, b: ProtectedPath) -> bool:
    return a.fresh_within is not None and (b.fresh_within is None or a.fresh_within < b.fresh_within)


_new_tuple = tuple.__new__


def as_identity(result: object) -> Identity | None:
    """What ``identify`` returned, as an ``Identity`` of strings (or ``None``)."""
    if type(result) is tuple and len(result) == 2:
        user_id, phone = result
        if type(user_id) is str and type(phone) is str and phone:
            # Identity(user_id, phone) without the NamedTuple's Python-level __new__: this
            # runs on every protected request.
            return _new_tuple(Identity, (user_id, phone, "", ""))
    if result is None:
        return None
    if isinstance(result, tuple) and len(result) in (2, 3, 4):
        if type(result) is Identity and all(type(x) is str for x in result) and result[1]:
            return result
        # Strings only: the proof cache is keyed by the Identity, so two identities must be
        # equal exactly when their bindings (built from str() of each field) are. A phone of
        # None (or "") is None: a signed-in user without a phone.
        fields = tuple(None if n == 1 and (x is None or x == "") else str(x) for n, x in enumerate(result))
        if fields[0] is None or result[0] is None:
            raise TypeError("identify returned no user id: return None when nobody is signed in")
        return _new_tuple(Identity, (*fields, *("",) * (4 - len(fields))))
    raise TypeError("identify must return (user_id, phone), Identity or None")



def is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)


def route_path(scope: Scope) -> str:
    """The path the app's router sees: ``scope["path"]`` without ``root_path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path

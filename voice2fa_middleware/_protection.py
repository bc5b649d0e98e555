"""Marking routes as 2FA-required: path patterns, a decorator, a FastAPI dependency.

All three ask the same question of the middleware's per-request handle
(``scope["voice2fa"]``): is this user verified, recently enough? If not, they answer with
the middleware's challenge (a 303 to the verify page, or a 401 JSON for API clients).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from fnmatch import translate
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

if TYPE_CHECKING:
    from ._middleware import Voice2FAHandle


class Identity(NamedTuple):
    """Who is signed in, as the app's ``identify`` callable tells it.

    ``version`` is any string the app changes to revoke what was verified before (verified
    cookies and remembered devices), for example when the password or the phone changes.
    """

    user_id: str
    phone: str
    version: str = ""


IdentifyResult = Identity | tuple[str, str] | tuple[str, str, str] | None
Identify = Callable[[HTTPConnection], IdentifyResult | Awaitable[IdentifyResult]]


@dataclass(frozen=True)
class ProtectedPath:
    """A path pattern that requires a second factor.

    ``"/account"`` protects ``/account`` and everything below it; shell wildcards
    (``"/admin/*/edit"``) match with ``fnmatch`` rules. ``fresh_within`` (seconds) asks for a
    verification no older than that (step-up, e.g. 300 for a payments page).
    """

    pattern: str
    fresh_within: int | None = None


class PathRules:
    """Compiled patterns: one regex per freshness, so a miss costs a single match."""

    def __init__(self, rules: Iterable[str | ProtectedPath]) -> None:
        self.rules = [r if isinstance(r, ProtectedPath) else ProtectedPath(r) for r in rules]
        for rule in self.rules:
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


class VerificationRequired(Exception):
    """Raised by the FastAPI dependency when the user must verify; the middleware turns
    it into the challenge response it carries."""

    def __init__(self, response: Response) -> None:
        super().__init__("voice 2FA required")
        self.response = response


def get_handle(conn: HTTPConnection) -> Voice2FAHandle:
    handle = conn.scope.get("voice2fa")
    if handle is None:
        raise RuntimeError(
            "voice2fa: no Voice2FAMiddleware in front of this route; "
            "add it with app.add_middleware(Voice2FAMiddleware, ...)"
        )
    return handle  # type: ignore[no-any-return]


F = TypeVar("F", bound=Callable[..., Any])


@overload
def require_voice_2fa(func: F, *, fresh_within: int | None = None) -> F: ...


@overload
def require_voice_2fa(func: None = None, *, fresh_within: int | None = None) -> Callable[[F], F]: ...


def require_voice_2fa(func: F | None = None, *, fresh_within: int | None = None) -> F | Callable[[F], F]:
    """Decorate a Starlette endpoint (sync or async, HTTP or websocket) to require a second
    factor, optionally no older than ``fresh_within`` seconds.

    ``@require_voice_2fa`` and ``@require_voice_2fa(fresh_within=300)`` both work.
    """

    def decorate(endpoint: F) -> F:
        names = list(inspect.signature(endpoint).parameters)
        kind = next((n for n in names if n in ("request", "websocket")), None)
        if kind is None:
            raise TypeError(f'require_voice_2fa: {endpoint.__qualname__} has no "request" or "websocket" argument')
        index = names.index(kind)

        def conn_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
            conn = kwargs.get(kind, args[index] if index < len(args) else None)
            assert isinstance(conn, HTTPConnection)
            return conn

        if kind == "websocket":

            @functools.wraps(endpoint)
            async def ws_wrapper(*args: Any, **kwargs: Any) -> None:
                ws = conn_of(args, kwargs)
                assert isinstance(ws, WebSocket)
                if not await get_handle(ws).is_verified(fresh_within):
                    await ws.close(code=1008)
                    return
                await endpoint(*args, **kwargs)

            return ws_wrapper  # type: ignore[return-value]

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = conn_of(args, kwargs)
            assert isinstance(request, Request)
            denied = await get_handle(request).require(fresh_within)
            if denied is not None:
                return denied
            if inspect.iscoroutinefunction(endpoint):
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


class VoiceTwoFactor:
    """A FastAPI dependency: ``Depends(VoiceTwoFactor())`` or
    ``Depends(VoiceTwoFactor(fresh_within=300))``.

    Returns the verified ``Identity``, or ``None`` for an anonymous request (signing in
    is the app's job); raises ``VerificationRequired`` (answered by the middleware with
    the challenge) when the signed-in user has not verified recently enough.
    """

    def __init__(self, *, fresh_within: int | None = None) -> None:
        self.fresh_within = fresh_within

    async def __call__(self, request: Request) -> Identity | None:
        handle = get_handle(request)
        denied = await handle.require(self.fresh_within)
        if denied is not None:
            raise VerificationRequired(denied)
        return await handle.identity()

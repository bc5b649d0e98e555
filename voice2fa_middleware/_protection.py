"""Marking single routes as 2FA-required: a decorator and a FastAPI dependency.

Both ask the per-request handle the middleware puts in ``scope["voice2fa"]`` (is this user
verified, recently enough?). If not, they answer with the middleware's challenge (a 303 to
the verify page, or a 401 JSON for API clients). Path patterns live in ``_rules``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependency's signature
# at run time, and before 0.124 it cannot resolve a string annotation on a callable
# instance's ``__call__`` (``request: "Request"`` became a query parameter, 422).

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ._core.rules import Identity
from ._handle import Voice2FAHandle


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
            handle = get_handle(request)
            denied = await handle.require(fresh_within)
            if denied is not None:
                return denied
            if inspect.iscoroutinefunction(endpoint):
                response = await endpoint(*args, **kwargs)
            else:
                response = await run_in_threadpool(endpoint, *args, **kwargs)
            if await handle.identity() is not None:
                handle.mark_no_store(response)
            return response

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

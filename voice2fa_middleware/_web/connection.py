"""The connection the middleware hands to ``identify``, with cookies parsed once.

Every request to a protected route reads cookies twice: the app's ``identify`` reads its
own (a session, a user cookie) and the middleware reads its proof. Browsers send the same
``Cookie`` header request after request, so parsing it is done once per distinct header
(with Starlette's own parser, so the result is exactly what ``request.cookies`` gives) and
shared by both readers.
"""

from __future__ import annotations

import functools

from starlette.requests import HTTPConnection, cookie_parser
from starlette.types import Scope

# Whether this Starlette reads every Cookie header (0.49 and later) or only the first. The
# middleware must see exactly the cookies the app's own request.cookies sees: were the two to
# differ, a request with two Cookie headers could be identified as one user here and served
# as another by the app.
_MERGES_HEADERS = HTTPConnection({"type": "http", "headers": [(b"cookie", b"a=1"), (b"cookie", b"b=2")]}).cookies == {
    "a": "1",
    "b": "2",
}

# Raw Cookie header -> parsed cookies. Bounded in entries and in the size of what it keeps:
# at most _MAX_ENTRIES headers of up to _MAX_HEADER bytes (about 4 MiB with their parses).
_parsed: dict[bytes, dict[str, str]] = {}
_MAX_ENTRIES = 512
_MAX_HEADER = 4096


def scope_cookies(scope: Scope) -> dict[str, str]:
    """The cookies of an HTTP or WebSocket scope, as ``HTTPConnection.cookies`` gives them.

    A fresh dict each time: the caller may change it.
    """
    headers = scope["headers"]
    if type(headers) is not list:  # any iterable, per ASGI: read it only once
        headers = scope["headers"] = list(headers)
    raw = None
    more: list[bytes] | None = None  # made only when there are several Cookie headers
    for key, value in headers:
        if key == b"cookie":
            if raw is None:
                raw = value
                if not _MERGES_HEADERS:
                    break  # as this Starlette does: the first Cookie header only
            elif more is None:
                more = [value]
            else:
                more.append(value)
    if more is None:
        try:
            parsed = _parsed.get(raw)  # type: ignore[arg-type]  # None: never there
        except TypeError:  # a bytearray (ASGI says bytes) does not hash
            raw, parsed = bytes(raw), None  # type: ignore[arg-type]
        if parsed is not None:
            return parsed.copy()  # the cached dict stays as parsed
        if raw is None:
            return {}
        parsed = cookie_parser(raw.decode("latin-1"))
        if len(raw) > _MAX_HEADER:
            return parsed
        if len(_parsed) >= _MAX_ENTRIES:
            _parsed.clear()  # a miss costs one parse, as it would without the cache
        _parsed[raw] = parsed
        return parsed.copy()
    assert raw is not None
    cookies = cookie_parser(raw.decode("latin-1"))
    for value in more:
        cookies.update(cookie_parser(value.decode("latin-1")))
    return cookies


class Connection(HTTPConnection):
    """A Starlette ``HTTPConnection`` whose ``cookies`` come from :func:`scope_cookies`.

    ``cookies`` is a plain attribute once read (or given): the app's ``identify`` and the
    middleware read it on every protected request.
    """

    def __init__(self, scope: Scope, cookies: dict[str, str] | None = None) -> None:
        # What HTTPConnection.__init__ does (a test checks it stays so), without the call:
        # this runs on every protected request.
        self.scope = scope
        if cookies is not None:
            self.__dict__["cookies"] = cookies

    @functools.cached_property
    def cookies(self) -> dict[str, str]:
        return scope_cookies(self.scope)

"""What a client posts to the middleware's own endpoints: bounded bodies, forms, CSRF.

Anything refused here raises ``Refused`` (a status and an error code); the endpoints'
guard turns it into the same page or JSON body as every other error.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qsl, urlsplit

import anyio
from starlette.requests import ClientDisconnect, Request


class Refused(Exception):
    """A request to one of our endpoints is refused: ``status``, an error code and, for a
    field of the wrong type, the field's name (``field`` in the JSON body)."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field


class ClientGone(Exception):
    """The client went away while sending its body: there is no one to answer."""


async def read_body(request: Request, limit: int, patience: float) -> bytes:
    """The whole body: at most ``limit`` bytes (413 past it, before reading it all), sent
    within ``patience`` seconds (408 after: a slow client must not hold a worker, S20)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Refused(400, "bad_request")
        if int(declared) > limit:
            raise Refused(413, "too_large")
    chunks = bytearray()
    with anyio.move_on_after(patience) as scope:
        try:
            async for chunk in request.stream():
                chunks += chunk
                if len(chunks) > limit:
                    raise Refused(413, "too_large")
        except ClientDisconnect:
            raise ClientGone from None
    if scope.cancelled_caught:
        raise Refused(408, "timeout")
    return bytes(chunks)


def multipart_fields(content_type: str, body: bytes, max_fields: int = 100) -> tuple[tuple[str, str], ...] | None:
    """The text fields of a ``multipart/form-data`` body, in order; ``None`` when it holds a
    file (any part with a ``filename``, even an empty file input), a part that is not plain
    UTF-8 text, or is malformed. Only ever given a small body (a form kept in a cookie)."""
    from email import policy
    from email.parser import BytesParser

    if "\r" in content_type or "\n" in content_type:
        return None
    try:
        head = b"Content-Type: " + content_type.encode("ascii") + b"\r\n\r\n"
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    except (UnicodeError, ValueError):
        return None
    if not message.is_multipart() or message.defects:
        return None
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        if part.defects or part.get_content_disposition() != "form-data" or part.get_filename() is not None:
            return None
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_content_type() != "text/plain" or part.is_multipart():
            return None
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return None
        try:
            fields.append((name.encode("utf-8", "surrogateescape").decode("utf-8"), payload.decode("utf-8")))
        except UnicodeError:
            return None
        if len(fields) > max_fields:
            return None
    return tuple(fields)


async def read_form(
    request: Request, limit: int, patience: float, *, flags: frozenset[str] = frozenset()
) -> dict[str, str]:
    """A URL-encoded form or a JSON object, as strings (415 for anything else).

    A JSON value must be a string (S33): ``{"phone": 12025550123}`` read as its JSON text
    placed a call, and a list or object would be a string no form can send. Anything else
    is refused with 400 naming the field, except ``null`` (as if the field were absent) and
    ``true``/``false`` in ``flags`` (checkboxes such as ``remember``: ``"true"``/``"false"``).
    """
    body = await read_body(request, limit, patience)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
        if ctype == "application/json":
            data = json.loads(text) if text else {}
            if not isinstance(data, dict):
                raise ValueError("a JSON object is expected")
            form: dict[str, str] = {}
            for key, value in data.items():
                if isinstance(value, str):
                    form[key] = value
                elif isinstance(value, bool) and key in flags:
                    form[key] = "true" if value else "false"
                elif value is not None:
                    raise Refused(400, "bad_request", field=key[:64])
            return form
        if ctype in ("application/x-www-form-urlencoded", ""):
            return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=50, strict_parsing=False))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refused(400, "bad_request") from None
    raise Refused(415, "bad_request")


def is_same_site(request: Request, public_url: str | None) -> bool:
    """Refuse cross-site posts (S11): ``Sec-Fetch-Site`` and ``Origin`` must agree."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {f"{request.url.scheme}://{request.url.netloc}"}
    if public_url:
        p = urlsplit(public_url)
        allowed.add(f"{p.scheme}://{p.netloc}")
    return origin in allowed


def check_csrf(request: Request, form: dict[str, str], expected: str | None) -> None:
    """The form's (or ``X-CSRF-Token``'s) token must be ``expected``, compared in constant time."""
    token = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
    if expected is None or not isinstance(token, str):
        raise Refused(403, "csrf")
    if not hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode()):
        raise Refused(403, "csrf")

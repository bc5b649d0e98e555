"""What the pages of a signed-in user's own settings share (the phone page, the recovery codes
page): who is signed in, and a CSRF token signed for that user.

Each page has its token's own salt, so a token of one form is worthless on another.
"""

from __future__ import annotations

import hmac

from itsdangerous import BadData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._core.crypto import new_id
from .._core.rules import Identity
from .._flow.runtime import Runtime
from .._web.forms import Refused
from .._web.pages import json_response

TOKEN_AGE = 3600  # seconds a form's CSRF token is good for
_MAX_TOKEN = 512


class UserPages:
    """The signed-in check and the user-bound CSRF tokens of one page (``salt``)."""

    def __init__(self, ctx: Runtime, salt: str) -> None:
        self.ctx = ctx
        self.tokens = ctx.keys.serializer(salt)

    async def signed_in(self, request: Request) -> Identity | Response:
        """Who is signed in, or the answer for nobody: a 401 for an API client, else home."""
        identity = await self.ctx.identify_conn(request)
        if identity is not None:
            return identity
        if self.ctx.wants_json(request):
            return json_response(401, {"error": "not_signed_in"})
        return RedirectResponse(self.ctx.app_url(request, "/"), status_code=303, headers={"cache-control": "no-store"})

    def token(self, identity: Identity) -> str:
        """A new CSRF token for this user's form."""
        return str(self.tokens.dumps([self.ctx.keys.tag("user", identity.user_id), new_id(8)]))

    def check_token(self, request: Request, form: dict[str, str], identity: Identity) -> None:
        """Refuse (403 ``csrf``) a form without a good token signed for this very user."""
        token = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
        try:
            data = self.tokens.loads(token, max_age=TOKEN_AGE) if 0 < len(token) <= _MAX_TOKEN else None
        except (BadData, UnicodeError, ValueError):
            data = None
        expected = self.ctx.keys.tag("user", identity.user_id)
        tag = data[0] if isinstance(data, list) and len(data) == 2 and isinstance(data[0], str) else ""
        if not hmac.compare_digest(tag.encode(), expected.encode()):
            raise Refused(403, "csrf")

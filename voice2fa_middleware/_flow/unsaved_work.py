"""Work not lost to the second factor (S30): what a request that is not a plain page visit gets.

A browser's background request (``fetch``, XHR) that needs the factor gets a 401 with JSON
naming where the page should send the user (``background_answer``), and never places a call
by itself: only the user's own visit to ``{prefix}/start`` does. A form posted while the
verification had expired is kept (``keep_form``, in a signed cookie set by the pipeline) and
offered again after verifying on ``{prefix}/resubmit``, never replayed without a click; a
form that cannot be kept is said to be unsaved on the verify page.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from .._core.rules import Identity
from .._core.urls import MAX_NEXT, bounded_next, safe_next
from .._web.forms import ClientGone, Refused, multipart_fields, read_body
from .._web.pages import json_response
from .pending import MAX_KEPT_COOKIE, MAX_KEPT_FORM, Resubmission
from .runtime import Runtime

# Methods that change nothing: a request of any other kind that must wait for the factor
# carries changes the user made.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_site_referer(request: Request) -> str | None:
    """The page a request came from (``Referer``), when it is on this site: its path and
    query, bounded; ``None`` otherwise."""
    referer = request.headers.get("referer", "")
    if not referer or len(referer) > 4 * MAX_NEXT:
        return None
    parts = urlsplit(referer)
    if parts.netloc and parts.netloc != request.headers.get("host"):
        return None
    page = safe_next(parts.path + ("?" + parts.query if parts.query else ""))
    return page if page is not None and len(page) <= MAX_NEXT else None


def background_answer(request: Request, ctx: Runtime, language: str, fresh_within: int | None) -> Response:
    """A script's request (``fetch``, XHR) that needs the factor: a 401 naming where the page
    should send the user (``verify_url``: it starts the call there, on a visit the user makes),
    never a call by itself, never a page the script cannot show."""
    page = same_site_referer(request) or "/"
    text = ctx.translations.translate(language, "error.background")
    query = {"next": page[:MAX_NEXT], **({"fresh": str(fresh_within)} if fresh_within is not None else {})}
    body = {
        "error": "voice2fa_required",
        "message": text,
        "verify_url": f"{ctx.mounted(request)}/start?" + urlencode(query),
    }
    return json_response(401, body, {"www-authenticate": 'Voice2FA realm="voice2fa"'})


async def keep_form(request: Request, ctx: Runtime, identity: Identity, back: str) -> Resubmission | None:
    """The posted form, kept to be offered again after verifying: a URL-encoded POST, or a
    multipart one with text fields only (admin panels post every edit form as multipart), whose
    body fits in a cookie. Anything else (a file upload, even an empty file input, a large
    form) is not kept, and the verify page says the changes were not saved. Only asked where
    the app has not read the body (the middleware's path rules; not the decorator or the
    FastAPI dependency)."""
    content_type = request.headers.get("content-type", "")
    ctype = content_type.split(";")[0].strip().lower()
    multipart = ctype == "multipart/form-data"
    if request.method != "POST" or not (multipart or ctype == "application/x-www-form-urlencoded"):
        return None
    try:
        body = await read_body(request, MAX_KEPT_FORM, ctx.settings.body_timeout)
        if multipart:
            fields = multipart_fields(content_type, body)
            if fields is None:
                return None
        else:
            fields = tuple(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100))
    except (Refused, ClientGone, ValueError, RuntimeError):
        return None
    action = safe_next(bounded_next(request.url.path, request.url.query))
    if action is None:
        return None
    kept = Resubmission(ctx.keys.tag("user", identity.user_id), action, fields, back, multipart)
    return kept if len(kept.dumps(ctx.keys)) <= MAX_KEPT_COOKIE else None

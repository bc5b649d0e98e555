"""Server-rendered pages (Jinja2 templates shipped in the package, overridable) and the
headers every response of the middleware carries."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, Response

from .._core.urls import safe_root
from .._i18n.catalogs import DEFAULT_TRANSLATIONS, Translations

logger = logging.getLogger("voice2fa")

# Pages that carry challenge state are never cached (S15) nor framed, and run only our
# own script and style.
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Pages:
    def __init__(
        self,
        template_dirs: Sequence[str | Path] = (),
        translations: Translations | None = None,
        *,
        help_url: str | None = None,
        logout_url: str | None = None,
        logout_method: str = "POST",
        signout_fields: SignoutFields | None = None,
    ) -> None:
        self.translations = translations or DEFAULT_TRANSLATIONS
        self.help_url = help_url
        self.logout_url = logout_url
        self.logout_method = logout_method
        self.signout_fields = signout_fields
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader([str(d) for d in template_dirs])]
        loaders.append(jinja2.PackageLoader("voice2fa_middleware", "templates"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        static = resources.files("voice2fa_middleware") / "static"
        self.static: dict[str, tuple[bytes, str]] = {}
        for name, media in (
            ("voice2fa.css", "text/css"),
            ("voice2fa.js", "text/javascript"),
            ("devphone.js", "text/javascript"),
            ("recovery.js", "text/javascript"),
        ):
            self.static[name] = ((static / name).read_bytes(), media)

    def html(
        self, template: str, *, status: int, language: str, headers: Mapping[str, str] | None = None, **context: Any
    ) -> HTMLResponse:
        def t(key: str, **values: object) -> str:
            return self.translations.translate(language, key, **values)

        request = context.get("request")
        # Made plain (S27): under a path parameter the URL chooses the root path, and
        # "/\\evil.example" + "/" is a link to another site.
        root = safe_root(request.scope.get("root_path", "")) if isinstance(request, HTTPConnection) else ""
        body = self.env.get_template(template).render(
            t=t,
            lang=language,
            # On every page: the app's home page, its sign-out and help pages (as the browser sees them).
            v2fa_home=root + "/",
            v2fa_logout=root + self.logout_url if self.logout_url else None,
            v2fa_logout_method=self.logout_method,
            v2fa_logout_fields=self._signout_fields(request),
            v2fa_help=root + self.help_url if self.help_url and self.help_url.startswith("/") else self.help_url,
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
        response.headers["content-language"] = language
        return response

    def _signout_fields(self, request: object) -> list[tuple[str, str]]:
        """The hidden fields the app's own sign-out form needs (its CSRF token), from the
        ``signout_fields`` hook; a failing hook costs the page nothing but those fields."""
        if self.signout_fields is None or not self.logout_url or not isinstance(request, HTTPConnection):
            return []
        try:
            return [(str(k), str(v)) for k, v in self.signout_fields(request).items()]
        except Exception:
            logger.exception("voice2fa: signout_fields failed; the Sign out form has no extra fields")
            return []

    def message(
        self,
        *,
        status: int,
        language: str,
        prefix: str,
        error: str,
        text: str,
        request: HTTPConnection,
        link: str | None = None,
        wait: int = 0,
        headers: Mapping[str, str] | None = None,
        recovery_url: str | None = None,
    ) -> HTMLResponse:
        """An error page: ``text``, a countdown of ``wait`` seconds, and the ways forward
        (``recovery_url``: a recovery code, when the call cannot help)."""
        return self.html(
            "voice2fa/message.html",
            status=status,
            language=language,
            headers=headers,
            request=request,
            prefix=prefix,
            error=error,
            text=text,
            link=link,
            wait=wait,
            clock=clock(wait),
            recovery_url=recovery_url,
        )


SignoutFields = Callable[[HTTPConnection], Mapping[str, str]]
"""``signout_fields(request)``: hidden fields for the Sign out form on our pages, such as the
app's CSRF token (``{"csrf_token": request.session["csrf"]}``). Sync; it runs while a page
is rendered."""


def clock(seconds: int) -> str:
    """A countdown as a clock: ``58:00``, ``1:02:03`` (the page's script ticks it down)."""
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def json_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def text_response(status: int, text: str, media_type: str = "text/plain") -> Response:
    return Response(text, status_code=status, media_type=media_type, headers={"cache-control": "no-store"})


def script_json(value: Any) -> str:
    """JSON safe to place inside an HTML attribute or script element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

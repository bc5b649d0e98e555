"""The phone page and its JSON twin: ``GET/POST {prefix}/phone`` (add or change the number).

Served only when the app gives ``on_phone_confirmed``. A user who has a phone verifies it,
recently (``enrol_fresh_within``), before changing it (step-up); a user without one enrols
straight away. The form is same-site only and carries a CSRF token signed for the user.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .._core.rules import Identity
from .._core.urls import safe_next
from .._flow.enrolment import Enrolment
from .._flow.recovery import freshly_verified
from .._telephony.numbers import check_phone, example_number, mask, region_of
from .._web.forms import Refused, is_same_site, read_form
from .._web.pages import json_response
from .user_pages import UserPages

_MAX_PHONE = 64  # characters of the typed number (spaces, dashes, brackets included)
_JSON_ERRORS = {
    "invalid": "invalid_phone",
    "number_type": "number_type",
    "voip": "voip",
    "country": "country",
    "same": "same_number",
}


class EnrolEndpoints:
    """``GET {prefix}/phone`` (the form) and ``POST {prefix}/phone`` (call the number)."""

    def __init__(self, enrolment: Enrolment) -> None:
        self.enrolment = enrolment
        self.challenger = enrolment.challenger
        self.ctx = ctx = enrolment.ctx
        self.settings = ctx.settings
        # The region a number typed without its country code belongs to: the one country
        # calls may go to, else the caller id's.
        regions = ctx.allowed_regions
        self.region = next(iter(regions)) if regions and len(regions) == 1 else region_of(ctx.from_number)
        self.example = example_number(self.region)
        self.pages = UserPages(ctx, "voice2fa.enrol")  # signed in, and the phone form's CSRF tokens

    async def _step_up(self, request: Request, identity: Identity) -> Response | None:
        """A user who has a phone proves it, recently, before changing it: else the challenge."""
        if identity.phone is None or freshly_verified(self.ctx, request, identity):
            return None
        return await self.challenger.challenge(request, identity)

    async def page(self, request: Request) -> Response:
        who = await self.pages.signed_in(request)
        if isinstance(who, Response):
            return who
        step_up = await self._step_up(request, who)
        if step_up is not None:
            return step_up
        next_url = safe_next(request.query_params.get("next")) or "/"
        return self._render(request, who, next_url, status=200)

    def _render(
        self,
        request: Request,
        identity: Identity,
        next_url: str,
        *,
        status: int,
        error: str | None = None,
        typed: str = "",
    ) -> Response:
        ctx = self.ctx
        language = ctx.language(request)
        current = mask(identity.phone) if identity.phone else None
        token = self.pages.token(identity)
        if ctx.wants_json(request):
            if error is not None:
                text = ctx.translations.translate(language, f"enrol.{error}")
                return json_response(status, {"error": _JSON_ERRORS[error], "message": text})
            submit_url = f"{ctx.mounted(request)}/phone"
            return json_response(
                status, {"phone": current, "csrf_token": token, "submit_url": submit_url, "example": self.example}
            )
        return ctx.pages.html(
            "voice2fa/phone.html",
            request=request,
            status=status,
            language=language,
            prefix=ctx.mounted(request),
            current=current,
            csrf_token=token,
            next_url=next_url,
            example=self.example,
            error=ctx.translations.translate(language, f"enrol.{error}") if error else None,
            typed=typed,
        )

    async def submit(self, request: Request) -> Response:
        ctx = self.ctx
        if not is_same_site(request, self.settings.public_url):
            raise Refused(403, "csrf")
        form = await read_form(request, self.settings.max_body_size, self.settings.body_timeout)
        who = await self.pages.signed_in(request)
        if isinstance(who, Response):
            return who
        self.pages.check_token(request, form, who)
        step_up = await self._step_up(request, who)
        if step_up is not None:
            return step_up
        next_url = safe_next(form.get("next")) or safe_next(request.query_params.get("next")) or "/"
        raw = form.get("phone", "")
        raw = raw if isinstance(raw, str) and len(raw) <= _MAX_PHONE else ""
        phone = check_phone(raw, ctx.allowed_regions, self.region, allow_voip=self.settings.allow_voip)
        if not phone.ok or phone.e164 is None:
            error = phone.reason if phone.reason in ("number_type", "voip", "country") else "invalid"
            await ctx.audit("call_refused", request, who.user_id, reason=f"phone_{error}")
            return self._render(request, who, next_url, status=400, error=error, typed=raw)
        if who.phone is not None and check_phone(who.phone, None).e164 == phone.e164:
            return self._render(request, who, next_url, status=400, error="same", typed=raw)
        if ctx.line_types is not None and await ctx.line_types.is_voip(phone.e164, who.user_id):
            await ctx.audit("call_refused", request, who.user_id, reason="phone_voip", source="lookup")
            return self._render(request, who, next_url, status=400, error="voip", typed=raw)
        language = ctx.language(request)
        return await self.enrolment.start(request, who, phone.e164, next_url, language)

"""The recovery codes pages and their JSON twins: ``GET/POST {prefix}/recovery`` (see and
create a set) and ``GET/POST {prefix}/recovery/use`` (sign in with a code instead of a call).

Served only when the app gives ``recovery_codes=`` (a ``RecoveryCodeStore``) and the setting
``recovery_codes`` is above 0. Creating codes needs a fresh verification (the phone page's
step-up rule, ``freshly_verified``) and a CSRF token signed for the user. Using one needs the
pending cookie's CSRF token, as the verify form does: the verify page's own pending cookie,
or one that ``GET {prefix}/recovery/use`` sets without placing any call, for a user whose
phone cannot be reached (the error pages of a call that cannot help link there).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from .._core.rules import Identity
from .._core.urls import safe_next
from .._errors import StoreError
from .._flow.challenge import Challenger
from .._flow.pending import Pending
from .._flow.recovery import EXAMPLE_CODE, RecoveryCodes, freshly_verified
from .._web.forms import Refused, is_same_site, read_form
from .._web.pages import json_response
from .user_pages import UserPages
from .verify import VerifyEndpoints

logger = logging.getLogger("voice2fa")



class RecoveryEndpoints:
    """``{prefix}/recovery`` (GET, POST) and ``{prefix}/recovery/use`` (GET, POST)."""

    def __init__(self, challenger: Challenger, codes: RecoveryCodes, verify: VerifyEndpoints) -> None:
        self.challenger = challenger
        self.codes = codes
        self.verify = verify
        self.ctx = ctx = challenger.ctx
        self.settings = ctx.settings
        self.pages = UserPages(ctx, "voice2fa.recovery")  # signed in, and the create form's CSRF tokens

    # -- shared -----------------------------------------------------------------------------

    async def _step_up(self, request: Request, identity: Identity) -> Response | None:
        """Codes are created by a user who verified recently (step-up), with the phone: a user
        without one is sent to the phone page (or refused), as on a protected route."""
        if identity.phone is not None and freshly_verified(self.ctx, request, identity):
            return None
        return await self.challenger.challenge(request, identity)

    # -- seeing and creating codes -------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        who = await self.pages.signed_in(request)
        if isinstance(who, Response):
            return who
        step_up = await self._step_up(request, who)
        if step_up is not None:
            return step_up
        next_url = safe_next(request.query_params.get("next")) or "/"
        return await self._render(request, who, next_url, codes=None)

    async def create(self, request: Request) -> Response:
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
        next_url = safe_next(form.get("next")) or "/"
        codes = await self.codes.create(request, who.user_id)
        return await self._render(request, who, next_url, codes=codes, status=201)

    async def _render(
        self, request: Request, identity: Identity, next_url: str, *, codes: list[str] | None, status: int = 200
    ) -> Response:
        ctx = self.ctx
        language = ctx.language(request)
        remaining = await self.codes.remaining(identity.user_id)
        token = self.pages.token(identity)
        if ctx.wants_json(request):
            body: dict[str, object] = {
                "remaining": remaining,
                "csrf_token": token,
                "create_url": f"{ctx.mounted(request)}/recovery",
            }
            if codes is not None:
                body["codes"] = codes
            return json_response(status, body)
        download = None
        if codes is not None:
            title = ctx.translations.translate(language, "recovery.title")
            text = "\n".join([title, "", *codes, ""])
            download = "data:text/plain;charset=utf-8," + quote(text)
        return ctx.pages.html(
            "voice2fa/recovery.html",
            request=request,
            status=status,
            language=language,
            prefix=ctx.mounted(request),
            title_key="recovery.title",
            remaining=remaining,
            codes=codes,
            download=download,
            csrf_token=token,
            next_url=next_url,
        )

    # -- using a code ---------------------------------------------------------------------------

    async def use_page(self, request: Request) -> Response:
        """The form to type a code. Keeps the pending cookie of a challenge in progress; sets
        one without a call for a user who has none (their phone cannot be reached)."""
        ctx = self.ctx
        who = await self.pages.signed_in(request)
        if isinstance(who, Response):
            return who
        language = ctx.language(request)
        held = ctx.pending(request)
        user_tag = ctx.keys.tag("user", who.user_id)
        requested = safe_next(request.query_params.get("next"))
        if held is not None and ctx.keys.tag_matches("user", who.user_id, held.user_tag):
            pending, set_cookie = held, False
            next_url = requested or safe_next(held.next_url) or "/"
        else:
            next_url = requested or "/"
            pending, set_cookie = Pending.new("", user_tag, next_url), True
        response: Response
        submit_url = f"{ctx.mounted(request)}/recovery/use"
        if ctx.wants_json(request):
            response = json_response(200, {"csrf_token": pending.csrf_token, "submit_url": submit_url})
        else:
            response = self._use_form(request, pending, next_url, language, status=200)
        if set_cookie:
            ctx.cookies.set(response, request, "pending", pending.dumps(ctx.keys))
        return response

    def _use_form(
        self, request: Request, pending: Pending, next_url: str, language: str, *, status: int, error: str | None = None
    ) -> Response:
        ctx = self.ctx
        back = ctx.verify_url(request, next_url) if pending.challenge_id else next_url
        return ctx.pages.html(
            "voice2fa/recovery_use.html",
            request=request,
            status=status,
            language=language,
            prefix=ctx.mounted(request),
            title_key="recovery.use_title",
            csrf_token=pending.csrf_token,
            next_url=next_url,
            back_url=back,
            example=EXAMPLE_CODE,
            error=error,
        )

    async def use(self, request: Request) -> Response:
        """A recovery code instead of the call's: counted like a code (attempt and lockout
        reserved before the comparison), used once, then the same proofs as a call's code."""
        ctx, s, verify = self.ctx, self.settings, self.verify
        language = ctx.language(request)
        form, pending, identity = await verify._form_with_csrf(request)
        next_url = safe_next(form.get("next")) or safe_next(pending.next_url) or "/"
        user_tag = pending.user_tag
        lockout = self.challenger.lockout(user_tag)
        now = ctx.now()
        locked = await self.challenger.locked_for(user_tag, now)
        if locked:
            return ctx.error(request, 429, "locked", language=language, retry_after=locked, link=next_url)
        # Reserve the attempt before comparing (S19): on the live challenge, as the verify form
        # does; without one (no call could be placed), on the user's failure counter alone.
        failures = 0
        reserved = None
        if pending.challenge_id:
            reserved = await ctx.run(
                ctx.store.reserve_attempt(pending.challenge_id, s.max_attempts, lockout=lockout, now=now)
            )
            if reserved.locked_for:
                return ctx.error(
                    request, 429, "locked", language=language, retry_after=reserved.locked_for, link=next_url
                )
            failures = reserved.failures
        if reserved is None or reserved.challenge is None:
            wait = await ctx.run(ctx.store.take([lockout], now))
            if wait > 0:
                return ctx.error(request, 429, "locked", language=language, retry_after=wait, link=next_url)
            failures, _left = await ctx.run(ctx.store.peek(lockout.key, now))
        raw = form.get("code", "")
        if isinstance(raw, str) and await self.codes.consume(identity.user_id, raw):
            return await self._used(request, identity, pending, next_url, language)
        await ctx.audit("failed", request, identity.user_id, method="recovery", failures=failures)
        if failures >= s.lockout_failures:
            await ctx.audit("locked", request, identity.user_id, failures=failures)
            if pending.challenge_id:
                await ctx.run(ctx.store.delete(pending.challenge_id))
            lock_left = await self.challenger.locked_for(user_tag, ctx.now())
            return ctx.error(
                request, 429, "locked", language=language, retry_after=lock_left or s.lockout_window, link=next_url
            )
        message = ctx.translations.translate(language, "recovery.invalid")
        if ctx.wants_json(request):
            return json_response(400, {"error": "invalid_code", "message": message})
        return self._use_form(request, pending, next_url, language, status=400, error=message)

    async def _used(
        self, request: Request, identity: Identity, pending: Pending, next_url: str, language: str
    ) -> Response:
        ctx = self.ctx
        if pending.challenge_id:  # the call's code is no longer needed
            await ctx.run(ctx.store.delete(pending.challenge_id))
        user_tag = ctx.keys.tag("user", identity.user_id)
        try:
            await ctx.run(ctx.store.clear(self.challenger.lockout(user_tag).key))
        except StoreError as exc:  # the code is used: the proof is granted all the same (S28)
            logger.warning("voice2fa: recovery code used, but the store failed clearing the failures: %s", exc)
        left = await self.codes.remaining(identity.user_id)
        await ctx.audit("recovery_used", request, identity.user_id, codes_left=left)
        await ctx.audit("verified", request, identity.user_id, method="recovery")
        tr = ctx.translations
        if left == 0:
            text = tr.translate(language, "recovery.last")
        else:
            text = tr.translate_n(language, "recovery.left", left, n=left)
        response: Response
        if ctx.wants_json(request):
            response = json_response(
                200, {"verified": True, "next": next_url, "recovery_codes_left": left, "message": text}
            )
        else:
            response = ctx.pages.html(
                "voice2fa/recovery_used.html",
                request=request,
                status=200,
                language=language,
                prefix=ctx.mounted(request),
                title_key="recovery.use_title",
                text=text,
                left=left,
                next_url=next_url,
                manage_url=f"{ctx.mounted(request)}/recovery?next=" + quote(next_url, safe="/"),
            )
        ctx.cookies.grant(response, request, identity, remember=False)
        return response

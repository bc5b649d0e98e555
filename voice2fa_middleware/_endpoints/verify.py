"""The verify page and its JSON twin: submit a code, call status, call again, cancel."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._core.rules import Identity
from .._core.urls import safe_next
from .._errors import StoreError
from .._flow.challenge import ENROL, VERIFY, Challenger
from .._flow.enrolment import Enrolment
from .._flow.pending import Pending
from .._stores.base import Challenge
from .._telephony.numbers import mask
from .._telephony.status import REPORTED
from .._web.forms import Refused, check_csrf, is_same_site, read_form
from .._web.pages import json_response, script_json

logger = logging.getLogger("voice2fa")

# Fields of a JSON post that may be true or false (a checkbox), not only strings.
_FLAGS = frozenset({"remember"})
_MAX_CODE_INPUT = 64
"""Characters a typed code may have, separators included: bounded before any work on it."""


def parse_code(raw: object, digits: int) -> str | None:
    """The code a person typed, or ``None`` when it cannot be one.

    People copy the code as the dev phone and the call say it (``1, 0, 9, 9, 5, 6``, or
    ``1、0、9`` in Japanese) or group it (``109 956``, ``109-956``, ``(109) 956``), so anything
    between the digits that is neither a letter nor a digit is a separator. A letter, or a digit
    of another script, refuses the whole input: ``1o9956`` is a typo, and dropping the ``o`` would
    silently lose a digit of what the person meant.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_CODE_INPUT:
        return None
    kept: list[str] = []
    for ch in raw:
        if "0" <= ch <= "9":
            kept.append(ch)
        elif ch.isalnum():
            return None
    return "".join(kept) if len(kept) == digits else None


class VerifyEndpoints:
    """``GET/POST {prefix}/verify``, ``GET {prefix}/verify/status``, ``POST {prefix}/resend``
    and ``POST {prefix}/cancel``."""

    def __init__(self, challenger: Challenger, enrolment: Enrolment | None = None) -> None:
        self.challenger = challenger
        self.enrolment = enrolment
        self.ctx = ctx = challenger.ctx
        self.settings = ctx.settings
        self._warned_unbound = False
        tr = ctx.translations
        self._status_labels = {
            lang: script_json(
                {k.rsplit(".", 1)[1]: v for k, v in tr.messages(lang).items() if k.startswith("page.status.")}
            )
            for lang in tr.languages
        }

    async def _form_with_csrf(self, request: Request) -> tuple[dict[str, str], Pending, Identity]:
        """The posted form, the pending state and the user, or ``Refused``."""
        ctx = self.ctx
        if not is_same_site(request, self.settings.public_url):
            raise Refused(403, "csrf")
        form = await read_form(request, self.settings.max_body_size, self.settings.body_timeout, flags=_FLAGS)
        pending = ctx.pending(request)
        if pending is None or not ctx.pending_in_header(request):
            check_csrf(request, form, pending.csrf_token if pending else None)
        assert pending is not None
        identity = await ctx.identify_conn(request)
        if identity is None or not ctx.keys.tag_matches("user", identity.user_id, pending.user_tag):
            raise Refused(403, "csrf")
        return form, pending, identity

    # -- the page ---------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        ctx = self.ctx
        language = ctx.language(request)
        pending = ctx.pending(request)
        requested = safe_next(request.query_params.get("next"))
        next_url = requested or (safe_next(pending.next_url) if pending else None) or "/"
        if pending is None:
            return ctx.error(request, 400, "no_challenge", language=language, link=next_url)
        identity = await ctx.identify_conn(request)
        ch = await ctx.run(ctx.store.get(pending.challenge_id))
        if ch is None and identity is not None and await self._reported(pending):
            return ctx.error(request, 410, "call_reported", language=language, link=next_url)
        if identity is None or ch is None or not ctx.keys.tag_matches("user", identity.user_id, ch.user_tag):
            return ctx.error(request, 400, "no_challenge", language=language, link=next_url)
        notice = None
        for flag, key in (("sent", "page.sent"), ("kept", "page.kept"), ("unsaved", "page.unsaved")):
            if request.query_params.get(flag) == "1":
                notice = self.ctx.translations.translate(language, key)
        return self._render(request, pending, ch, next_url, language, status=200, notice=notice)

    def _render(
        self,
        request: Request,
        pending: Pending,
        ch: Challenge,
        next_url: str,
        language: str,
        *,
        status: int,
        error: str | None = None,
        notice: str | None = None,
    ) -> Response:
        call_status = ch.call_status or "queued"
        return self.ctx.pages.html(
            "voice2fa/verify.html",
            request=request,
            status=status,
            language=language,
            prefix=self.ctx.mounted(request),
            masked_phone=mask(ch.phone),
            csrf_token=pending.csrf_token,
            next_url=next_url,
            digits=self.settings.code_digits,
            error=error,
            notice=notice,
            status_text=self.ctx.translations.translate(language, f"page.status.{call_status}"),
            title_key="enrol.confirm_title" if pending.enrolment else "page.title",
            status_labels=self._status_labels.get(language, self._status_labels["en"]),
            resend_in=self.challenger.resend_in(ch),
            remember_days=self.settings.remember_days,
            recovery=self.ctx.recovery_enabled,
            logout_url=self.ctx.app_url(request, self.settings.logout_url) if self.settings.logout_url else None,
        )

    # -- submitting a code ---------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        ctx, s = self.ctx, self.settings
        language = ctx.language(request)
        form, pending, identity = await self._form_with_csrf(request)
        next_url = safe_next(form.get("next")) or safe_next(pending.next_url) or "/"
        user_tag = pending.user_tag
        locked = await self.challenger.locked_for(user_tag, ctx.now())
        if locked:
            return ctx.error(request, 429, "locked", language=language, retry_after=locked, link=next_url)
        code = parse_code(form.get("code", ""), s.code_digits)
        if code is None:
            current = await ctx.run(ctx.store.get(pending.challenge_id))
            left = s.max_attempts - current.attempts if current else 0
            return self._invalid(request, left, language, pending, current, next_url)
        lockout = self.challenger.lockout(user_tag)
        reserved = await ctx.run(
            ctx.store.reserve_attempt(pending.challenge_id, s.max_attempts, lockout=lockout, now=ctx.now())
        )
        if reserved.locked_for:
            return ctx.error(request, 429, "locked", language=language, retry_after=reserved.locked_for, link=next_url)
        ch = reserved.challenge
        if ch is None or ch.user_tag != user_tag:
            return self._invalid(request, 0, language, None, None, next_url)
        self._check_binding(ch, identity, pending)
        if ch.code_mac and ctx.keys.code_matches(ch.id, code, ch.code_mac):
            if await ctx.run(ctx.store.consume(ch.id, ch.code_mac)):
                return await self._verified(request, identity, next_url, form, ch, enrol=bool(pending.enrolment))
            return self._invalid(request, 0, language, None, None, next_url)
        # The failure was counted with the attempt, before the comparison (S19).
        count = reserved.failures
        left = s.max_attempts - ch.attempts
        await ctx.audit("failed", request, identity.user_id, challenge=ch.id, attempts_left=left, failures=count)
        if left <= 0:
            await ctx.run(ctx.store.delete(ch.id))
        if count >= s.lockout_failures:
            await ctx.audit("locked", request, identity.user_id, challenge=ch.id, failures=count)
            await ctx.run(ctx.store.delete(ch.id))
            lock_left = await self.challenger.locked_for(user_tag, ctx.now())
            return ctx.error(
                request, 429, "locked", language=language, retry_after=lock_left or s.lockout_window, link=next_url
            )
        alive = left > 0
        return self._invalid(
            request, left, language, pending if alive else None, ch if alive else None, next_url, dead=not alive
        )

    def _check_binding(self, ch: Challenge, identity: Identity, pending: Pending) -> None:
        """The user must still be who the challenge was made for, with the phone it called
        (S23): a proof is never granted for a phone that did not get the call. An enrolment
        challenge (marked in the signed pending cookie) is bound to the new number."""
        if pending.enrolment:
            ok = self.enrolment is not None and bool(ch.phone)
            expected = self.challenger.binding(ENROL, identity, ch.phone) if ok else None
        else:
            expected = self.challenger.binding(VERIFY, identity) if identity.phone is not None else None
        if expected is None or ch.binding != expected:
            raise Refused(409, "changed")

    async def _verified(
        self, request: Request, identity: Identity, next_url: str, form: dict[str, str], ch: Challenge, *, enrol: bool
    ) -> Response:
        ctx = self.ctx
        if enrol and self.enrolment is not None:  # the app saves the number; the proof is for it
            confirmed = await self.enrolment.confirmed(request, identity, ch)
            if confirmed is None:
                return self.enrolment.failed(request)
            identity = confirmed
        await self._after_consume(identity, ch)
        ctx.telemetry.record("voice2fa.verify.duration", max(ctx.now() - ch.created_at, 0.0))
        remember = form.get("remember") in ("1", "on", "true")
        if remember and ctx.cookies.remember_enabled:  # a new remembered device: the user is told
            await ctx.audit("verified", request, identity.user_id, challenge=ch.id, remembered=1)
        else:
            await ctx.audit("verified", request, identity.user_id, challenge=ch.id)
        self._warn_unbound(identity)
        response: Response
        if ctx.wants_json(request):
            response = json_response(200, {"verified": True, "next": next_url})
            proof = ctx.cookies.grant(response, request, identity, remember=remember)
            if ctx.pending_in_header(request):  # a client without cookies sends this instead
                response = json_response(
                    200, {"verified": True, "next": next_url, "proof_token": proof, "proof_header": "X-Voice2FA-Proof"}
                )
            return response
        kept = ctx.resubmission(request, identity)
        target = f"{ctx.mounted(request)}/resubmit" if kept is not None else next_url
        response = RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})
        ctx.cookies.grant(response, request, identity, remember=remember)
        return response

    def _warn_unbound(self, identity: Identity) -> None:
        """Once per process: a proof that nothing ends at sign-out (no ``logout_url`` the
        middleware sees, no ``Identity.session``) outlives the app's sign-out on that browser."""
        if self._warned_unbound or self.settings.logout_url or identity.session:
            return
        self._warned_unbound = True
        logger.warning(
            "voice2fa: neither logout_url nor Identity.session is set: a verification outlives the app's "
            "sign-out on that browser (until verified_max_age). Return Identity(..., session=<a hash of "
            "the sign-in's session token>) from identify(), or set logout_url"
        )

    async def _after_consume(self, identity: Identity, ch: Challenge) -> None:
        """What follows a right code: the failure count cleared, the phone remembered. The
        code is consumed by now, so a store failing here must not cost the user the proof
        they earned (S28): it is logged, and the proof granted all the same (the failure
        reserved for this attempt stays counted until the lockout window ends)."""
        ctx = self.ctx
        user_tag = ctx.keys.tag("user", identity.user_id)
        try:
            await ctx.run(ctx.store.clear(self.challenger.lockout(user_tag).key))
            await self.challenger.remember_phone(user_tag, ch.phone)
        except StoreError as exc:
            logger.warning("voice2fa: verified, but the store failed on the steps after the code: %s", exc)

    def _invalid(
        self,
        request: Request,
        attempts_left: int,
        language: str,
        pending: Pending | None,
        ch: Challenge | None,
        next_url: str,
        *,
        dead: bool = False,
    ) -> Response:
        """The one answer for a wrong, expired or unknown code (same status and shape)."""
        tr = self.ctx.translations
        message = tr.translate(language, "error.dead" if dead else "error.invalid_code")
        if attempts_left > 0:
            message += " " + tr.translate_n(language, "error.attempts_left", attempts_left, n=attempts_left)
        if self.ctx.wants_json(request):
            return json_response(400, {"error": "invalid_code", "message": message, "attempts_left": attempts_left})
        if pending is not None and ch is not None:
            return self._render(request, pending, ch, next_url, language, status=400, error=message)
        return self.ctx.pages.message(
            status=400,
            language=language,
            prefix=self.ctx.mounted(request),
            request=request,
            error="invalid_code",
            text=message,
            link=next_url,
        )

    # -- a visit that starts the call, a form offered again --------------------------------------

    async def start(self, request: Request) -> Response:
        """``GET {prefix}/start?next=...``: where a background request's 401 sends the user.
        On this visit (the user's own), a signed-in user without a fresh enough proof is
        called and sent to the verify page; anyone else goes on to ``next``."""
        ctx = self.ctx
        next_url = safe_next(request.query_params.get("next")) or "/"
        fresh = request.query_params.get("fresh", "")
        fresh_within = int(fresh) if fresh.isascii() and fresh.isdigit() and len(fresh) <= 9 else None
        identity = await ctx.identify_conn(request)
        if identity is not None:
            at = ctx.cookies.verified_at(request.cookies, request.scope, identity)
            if at is None or (fresh_within is not None and ctx.now() - at > fresh_within):
                return await self.challenger.challenge(request, identity, next_url=next_url)
        return RedirectResponse(next_url, status_code=303, headers={"cache-control": "no-store"})

    async def resubmit(self, request: Request) -> Response:
        """``GET {prefix}/resubmit``: the form the user posted while unverified, offered again
        (one click posts it as it was); shown once: the kept copy is deleted here."""
        ctx = self.ctx
        identity = await ctx.identify_conn(request)
        kept = ctx.resubmission(request, identity) if identity is not None else None
        at = ctx.cookies.verified_at(request.cookies, request.scope, identity) if identity is not None else None
        verified = at is not None
        if kept is None or not verified:
            response: Response = RedirectResponse(ctx.app_url(request, "/"), status_code=303)
        else:
            response = ctx.pages.html(
                "voice2fa/resubmit.html",
                request=request,
                status=200,
                language=ctx.language(request),
                prefix=ctx.mounted(request),
                action=kept.action,
                fields=kept.fields,
                back=kept.back,
                multipart=kept.multipart,
            )
        response.headers["cache-control"] = "no-store"
        ctx.cookies.delete(response, request, "resubmit")
        return response

    # -- status, call again, cancel --------------------------------------------------------------

    async def _reported(self, pending: Pending) -> bool:
        """Whether the pending challenge ended because the person called pressed 9 (the
        challenge is deleted then; a mark says why, for ``code_ttl``)."""
        key = self.challenger.budgets.reported_call_key(pending.user_tag, pending.challenge_id)
        count, _left = await self.ctx.run(self.ctx.store.peek(key, self.ctx.now()))
        return bool(count > 0)

    async def status(self, request: Request) -> Response:
        ctx = self.ctx
        pending = ctx.pending(request)
        ch = await ctx.run(ctx.store.get(pending.challenge_id)) if pending else None
        if ch is None and pending is not None and await self._reported(pending):
            # The call was reported ("not me"): the page says what happened and what to do.
            ended = {"attempts_left": 0, "resend_in": 0, "calls_left": 0, "expires_in": 0}
            return json_response(200, {"call_status": REPORTED, **ended})
        if ch is None or pending is None or ch.user_tag != pending.user_tag:
            return json_response(404, {"error": "no_challenge"})
        return json_response(
            200,
            {
                "call_status": ch.call_status or "queued",
                "attempts_left": max(0, self.settings.max_attempts - ch.attempts),
                "resend_in": self.challenger.resend_in(ch),
                "calls_left": max(0, self.settings.max_calls_per_challenge - ch.calls),
                "expires_in": max(0, int(ch.expires_at - ctx.now())),
            },
        )

    async def resend(self, request: Request) -> Response:
        ctx, challenger = self.ctx, self.challenger
        language = ctx.language(request)
        form, pending, identity = await self._form_with_csrf(request)
        next_url = safe_next(form.get("next")) or safe_next(pending.next_url) or "/"
        now = ctx.now()
        ch = await ctx.run(ctx.store.get(pending.challenge_id))
        if ch is None or ch.user_tag != pending.user_tag:
            return ctx.error(request, 400, "no_challenge", language=language, link=next_url)
        self._check_binding(ch, identity, pending)
        locked = await challenger.locked_for(ch.user_tag, now)
        if locked:
            await ctx.audit("call_refused", request, identity.user_id, reason="lockout")
            return ctx.error(request, 429, "locked", language=language, retry_after=locked, link=next_url)
        wait = challenger.resend_in(ch)
        if wait > 0:
            await ctx.audit("call_refused", request, identity.user_id, reason="cooldown")
            return ctx.error(
                request,
                429,
                "rate_limited",
                language=language,
                retry_after=wait,
                link=ctx.verify_url(request, next_url),
            )
        policy = ENROL if pending.enrolment else VERIFY
        back = ctx.verify_url(request, next_url)
        failure = await challenger.call_again(request, policy, ch, identity.user_id, language, back)
        if failure is not None:
            return failure
        if ctx.wants_json(request):
            return json_response(202, {"status": "calling"})
        return RedirectResponse(
            ctx.verify_url(request, next_url) + "&sent=1", status_code=303, headers={"cache-control": "no-store"}
        )

    async def cancel(self, request: Request) -> Response:
        ctx = self.ctx
        _form, pending, _identity = await self._form_with_csrf(request)
        await ctx.run(ctx.store.delete(pending.challenge_id))
        home = ctx.app_url(request, "/")
        response: Response = RedirectResponse(home, status_code=303, headers={"cache-control": "no-store"})
        if ctx.wants_json(request):
            response = json_response(200, {"canceled": True})
        ctx.cookies.delete(response, request, "pending")
        return response

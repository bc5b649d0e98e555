"""The provider's webhooks (S7): the LaML that reads the code, and call status callbacks.

Both are reached at ``{prefix}/laml/<call token>[/code|/repeat]`` and
``{prefix}/status/<call token>``, the URLs given to the provider with the call, and the
verdict of answering machine detection at ``{prefix}/status/<call token>/amd``. A request
is looked at only when its signature is good, checked against the URL the provider was given.

Two answers end a call early: 9 at the first prompt ("I did not try to sign in": the
challenge is cancelled, the user's calls paused, the event audited), and a machine's answer
(the next LaML fetch hangs up; the verify page says the voicemail answered).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from .._flow.budgets import Budgets
from .._flow.runtime import Runtime
from .._settings import Voice2FASettings
from .._stores.base import Challenge
from .._telephony.numbers import region_of
from .._telephony.signatures import SIGNATURE_HEADERS, is_valid_signature
from .._telephony.status import CALL_STATUSES, FINAL_STATUSES, MACHINE, MACHINE_ANSWERS
from .._web.forms import read_body
from .._web.pages import text_response

logger = logging.getLogger("voice2fa")

# The challenge id of the test call placed by the check command (its token is signed like any other).
CHECK_CALL = "check"
# The key that says "I did not try to sign in" at the first prompt.
NOT_ME = "9"


def _laml_response(document: str) -> Response:
    return Response(document, media_type="application/xml", headers={"cache-control": "no-store"})


class WebhookEndpoints:
    """``POST {prefix}/laml/{token}[/{action}]`` and ``POST {prefix}/status/{token}``."""

    def __init__(self, ctx: Runtime) -> None:
        self.ctx = ctx
        self.budgets = Budgets(ctx.settings, ctx.keys, calls_nobody=ctx.caller.calls_nobody)

    async def _signed_form(self, request: Request) -> dict[str, str] | Response:
        """The form of a request signed by the provider, or the response refusing it."""
        ctx = self.ctx
        body = await read_body(request, ctx.settings.max_body_size, ctx.settings.body_timeout)
        try:
            text = body.decode("utf-8")
            params = parse_qsl(text, keep_blank_values=True, max_num_fields=100)
        except (UnicodeDecodeError, ValueError):
            return text_response(400, "Bad Request")
        query = request.url.query
        url = ctx.base_url(request) + request.url.path + ("?" + query if query else "")
        signature = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), None)
        if not is_valid_signature(ctx.settings.webhook_key, url, params, text, signature):
            logger.warning("voice2fa: refused a webhook with a missing or invalid signature")
            return text_response(403, "Forbidden: invalid signature")
        return dict(params)

    def _call_of(self, token: str) -> tuple[str, str] | None:
        """(challenge id, call nonce) of a call token, or ``None`` for a bad or old one."""
        ctx = self.ctx
        loaded = ctx.keys.load(ctx.keys.call, token, ctx.settings.code_ttl + 3600, max_length=512)
        if isinstance(loaded, list) and len(loaded) == 2 and all(isinstance(x, str) for x in loaded):
            return loaded[0], loaded[1]
        return None

    async def laml(self, request: Request) -> Response:
        # The signature first, then the span (S31): a span joins the trace its request's
        # traceparent names, and only the provider may choose that; a refused request gets none.
        form = await self._signed_form(request)
        if isinstance(form, Response):
            return form
        with self.ctx.telemetry.span("voice2fa.webhook.laml", request.headers, "server"):
            return await self._laml_webhook(request, form)

    async def _laml_webhook(self, request: Request, form: dict[str, str]) -> Response:
        token = request.path_params["token"]
        action = request.path_params.get("action", "")
        call = self._call_of(token)
        if call is None:
            return _laml_response(self.ctx.laml.goodbye(language="en", expired=True))
        if call[0] == CHECK_CALL:  # "python -m voice2fa_middleware check --call": no code, a phrase
            return _laml_response(self.ctx.laml.check_phrase())
        if action not in ("", "code", "repeat"):
            return text_response(404, "Not Found")
        return await self._laml(request, call, form.get("CallSid", "")[:64], action, form)

    async def _laml(
        self, request: Request, call: tuple[str, str], call_sid: str, action: str, form: dict[str, str]
    ) -> Response:
        ctx = self.ctx
        challenge_id, nonce = call
        status = "in-progress" if action == "" else None
        ch = await ctx.run(ctx.store.update_call(challenge_id, nonce, call_sid=call_sid or None, status=status))
        if ch is not None and ch.call_status == MACHINE and call_sid and ch.call_sid == call_sid:
            return _laml_response(ctx.laml.hangup())  # a voicemail: not a word (its code is dropped)
        if ch is None or not ch.code or ctx.now() >= ch.expires_at:
            return _laml_response(ctx.laml.goodbye(language=ch.language if ch else "en", expired=True))
        if not call_sid or ch.call_sid != call_sid:
            return text_response(403, "Forbidden: not this call")
        if action == "code" and form.get("Digits") == NOT_ME and ctx.settings.voicemail_guard:
            return await self._reported(request, ch)
        base = ctx.base_url(request) + ctx.mounted(request)
        token = ctx.keys.call.dumps([challenge_id, nonce])
        if action == "" and ctx.settings.voicemail_guard:
            return _laml_response(ctx.laml.answer(action=f"{base}/laml/{token}/code", language=ch.language))
        if action == "repeat" and form.get("Digits") != "1":
            return _laml_response(ctx.laml.goodbye(language=ch.language))
        return _laml_response(ctx.laml.code(code=ch.code, action=f"{base}/laml/{token}/repeat", language=ch.language))

    async def _reported(self, request: Request, ch: Challenge) -> Response:
        """9 at the first prompt: the person called did not try to sign in. The code is never
        read; the challenge is cancelled, the page told why (a mark for its status poll), and
        no call goes to this user for ``reported_pause`` seconds (someone holds their password)."""
        ctx, s = self.ctx, self.settings
        now = ctx.now()
        await ctx.run(ctx.store.hit(self.budgets.reported_call_key(ch.user_tag, ch.id), s.code_ttl, now))
        if s.reported_pause > 0:
            await ctx.run(ctx.store.hit(self.budgets.reported(ch.user_tag).key, s.reported_pause, now))
        await ctx.run(ctx.store.delete(ch.id))
        logger.warning("voice2fa: a call was reported by the person called (they did not try to sign in)")
        await ctx.audit(
            "call_reported", None, None, challenge=ch.id, country=region_of(ch.phone) or "", call_sid=ch.call_sid
        )
        return _laml_response(ctx.laml.reported(language=ch.language))

    @property
    def settings(self) -> Voice2FASettings:
        return self.ctx.settings

    async def amd(self, request: Request) -> Response:
        """The verdict of asynchronous answering machine detection (``AnsweredBy``)."""
        form = await self._signed_form(request)  # before the span, as in laml (S31)
        if isinstance(form, Response):
            return form
        with self.ctx.telemetry.span("voice2fa.webhook.status", request.headers, "server"):
            return await self._amd_webhook(request, form)

    async def _amd_webhook(self, request: Request, form: dict[str, str]) -> Response:
        ctx = self.ctx
        call = self._call_of(request.path_params["token"])
        if call is None:
            return text_response(404, "Not Found")
        challenge_id, nonce = call
        call_sid = form.get("CallSid", "")[:64]
        if form.get("AnsweredBy", "") not in MACHINE_ANSWERS:  # a person (or unknown): the call goes on
            return Response(status_code=204, headers={"cache-control": "no-store"})
        ch = await ctx.run(ctx.store.get(challenge_id))
        if ch is not None and ch.call_sid and call_sid and ch.call_sid != call_sid:
            return text_response(403, "Forbidden: not this call")
        # The code is dropped: whatever the machine does next, the LaML hangs up.
        updated = await ctx.run(
            ctx.store.update_call(challenge_id, nonce, call_sid=call_sid or None, status=MACHINE, drop_code=True)
        )
        if updated is not None:
            await ctx.audit("call_status", None, None, challenge=challenge_id, status=MACHINE, call_sid=call_sid)
        return Response(status_code=204, headers={"cache-control": "no-store"})

    async def status(self, request: Request) -> Response:
        form = await self._signed_form(request)  # before the span, as in laml (S31)
        if isinstance(form, Response):
            return form
        with self.ctx.telemetry.span("voice2fa.webhook.status", request.headers, "server"):
            return await self._status_webhook(request, form)

    async def _status_webhook(self, request: Request, form: dict[str, str]) -> Response:
        ctx = self.ctx
        call = self._call_of(request.path_params["token"])
        if call is None:
            return text_response(404, "Not Found")
        challenge_id, nonce = call
        call_sid = form.get("CallSid", "")[:64]
        status = form.get("CallStatus", "")
        if status not in CALL_STATUSES:
            return text_response(400, "Bad Request: unknown CallStatus")
        ch = await ctx.run(ctx.store.get(challenge_id))
        if ch is not None and ch.call_sid and call_sid and ch.call_sid != call_sid:
            return text_response(403, "Forbidden: not this call")
        final = status in FINAL_STATUSES
        updated = await ctx.run(
            ctx.store.update_call(challenge_id, nonce, call_sid=call_sid or None, status=status, drop_code=final)
        )
        if updated is not None:
            await ctx.audit("call_status", None, None, challenge=challenge_id, status=status, call_sid=call_sid)
        return Response(status_code=204, headers={"cache-control": "no-store"})

"""Phone enrolment: a number is confirmed by a call to it before the app saves it.

A signed-in user enters a number on the phone page (``_enrol_endpoints``); it is validated
like every number we call, and a challenge is started for it with budgets of its own
(``Enrolment.buckets``), stricter than verification's: enrolment calls go to numbers the
user chose, the toll-fraud front door. The code is entered on the verify page. Only a right
code for a call to that very number calls the app's ``on_phone_confirmed(user_id, e164)``,
and the user is then verified for the new number.

An enrolment challenge is bound (``Enrolment.binding``) to the user, the new number, the
``Identity.version`` and the number the user had: a verification challenge can never be
taken for an enrolment one, nor one made before the account changed.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from ._challenge import Challenger, new_challenge
from ._context import client_group
from ._crypto import new_id
from ._pages import json_response
from ._phone import check_phone, region_of
from ._rules import Identity, is_async_callable
from ._store import Bucket, Challenge, own_slot, user_key

logger = logging.getLogger("voice2fa")

PhoneConfirmed = Callable[[str, str], "Awaitable[None] | None"]
SHARED_WINDOW = 86400  # a day: the window in which accounts confirming one number are counted


class Enrolment:
    """Starts enrolment challenges and finishes them with the app's ``on_phone_confirmed``."""

    def __init__(self, challenger: Challenger, on_phone_confirmed: PhoneConfirmed) -> None:
        self.challenger = challenger
        self.ctx = challenger.ctx
        self.settings = challenger.settings
        self.on_phone_confirmed = run_sync_hook(on_phone_confirmed)

    def binding(self, identity: Identity, e164: str) -> str:
        """What an enrolment challenge is bound to: the user, the new number, the account's
        version and its number at the start (S23)."""
        fields = ["enrol", identity.user_id, e164, identity.version, identity.phone]
        return self.ctx.keys.tag("binding", json.dumps(fields))

    def buckets(self, conn: HTTPConnection, user_tag: str, e164: str) -> list[Bucket]:
        """The budgets an enrolment call is charged to: the deployment's and the number's
        shared ones (as any call to a number nobody verified), and the enrolment budgets
        of the number, the user and the client network."""
        s, keys, x = self.settings, self.ctx.keys, self.challenger.budget_scale
        phone = own_slot(keys.tag("phone", e164))
        client = own_slot(keys.tag("client", client_group(self.ctx.client_address(conn))))
        return [
            Bucket("calls:all", s.calls_per_hour * x, 3600),
            Bucket("calls:phone:" + phone, s.calls_per_phone_per_hour * x, 3600),
            Bucket("enrol:phone:" + phone, s.enrol_calls_per_phone_per_hour * x, 3600),
            Bucket("enrol:user:" + user_key(user_tag), s.enrol_calls_per_user_per_hour * x, 3600),
            Bucket("enrol:client:" + client, s.enrol_calls_per_client_per_hour * x, 3600),
        ]

    async def start(self, request: Request, identity: Identity, e164: str, next_url: str, language: str) -> Response:
        """Call ``e164`` with a new code, and send the user to the verify page to type it."""
        ctx, challenger = self.ctx, self.challenger
        user_tag = ctx.keys.tag("user", identity.user_id)
        paused = getattr(ctx.caller, "paused_for", None)
        if paused is not None and (left := paused()) > 0:
            await ctx.audit("call_failed", request, identity.user_id, provider_status=0, reason="provider_unavailable")
            return ctx.error(request, 503, "provider_unavailable", language=language, retry_after=left, link=next_url)
        now = ctx.now()
        challenge = new_challenge(ctx, user_tag, e164, self.binding(identity, e164), language, now)
        buckets = self.buckets(request, user_tag, e164)
        lockout = challenger.lockout(user_tag)
        # known_key names a counter nobody writes: the enrolment budgets apply either way.
        none = "enrol:none:" + user_key(user_tag)
        started = await ctx.run(
            ctx.store.start(challenge, lockout=lockout, known_key=none, known=buckets, new=buckets, now=now)
        )
        if started.locked_for:
            await ctx.audit("call_refused", request, identity.user_id, reason="lockout")
            return ctx.error(request, 429, "locked", language=language, retry_after=started.locked_for, link=next_url)
        if started.wait or started.challenge is None:
            page = f"{ctx.mounted(request)}/phone?" + urlencode({"next": next_url})
            return await self.refused(request, identity.user_id, buckets, started.wait or 1.0, language, page)
        pending = {"c": started.challenge.id, "u": user_tag, "x": new_id(), "n": next_url, "e": "1"}
        if started.created:
            country = region_of(e164) or ""
            await ctx.audit("challenge_created", request, identity.user_id, challenge=challenge.id, country=country)
            failure = await challenger._dial(request, challenge, challenge.call_nonce, identity.user_id, first=True)
            if failure is not None:
                await ctx.run(ctx.store.delete(challenge.id))
                return failure
        return self.to_verify(request, pending)

    def to_verify(self, request: Request, pending: dict[str, str]) -> Response:
        """The verify page (a 303), or for API clients a 202 with its URLs and CSRF token."""
        ctx = self.ctx
        verify_url = ctx.verify_url(request, pending["n"])
        mounted = ctx.mounted(request)
        response: Response
        if ctx.wants_json(request):
            body = {
                "status": "calling",
                "verify_url": verify_url,
                "status_url": f"{mounted}/verify/status",
                "resend_url": f"{mounted}/resend",
                "cancel_url": f"{mounted}/cancel",
                "csrf_token": pending["x"],
            }
            response = json_response(202, body)
        else:
            response = RedirectResponse(verify_url, status_code=303, headers={"cache-control": "no-store"})
        ctx.cookies.set(response, request, "pending", ctx.keys.pending.dumps(pending))
        return response

    async def refused(
        self, request: Request, user_id: str, buckets: list[Bucket], wait: float, language: str, link: str
    ) -> Response:
        """The 429 for a spent enrolment budget (``link``: where to try again); which budget
        is in the audit log."""
        ctx, now = self.ctx, self.ctx.now()
        await ctx.audit("call_refused", request, user_id, reason="rate_limited")
        for bucket in buckets:
            count, left = await ctx.run(ctx.store.peek(bucket.key, now))
            if count >= bucket.limit:
                scope = "_".join(bucket.key.split(":")[:2])  # calls_all, enrol_phone, enrol_user...
                if scope in ("calls_all", "calls_phone", "enrol_phone"):
                    logger.warning("voice2fa: the %s call budget is spent for %d s", scope, left)
                await ctx.audit("budget_exhausted", request, user_id, budget=scope, limit=bucket.limit)
        return ctx.error(request, 429, "rate_limited", language=language, retry_after=wait, link=link)

    def failed(self, request: Request) -> Response:
        """The 500 when the app's hook failed: the number was confirmed but not saved."""
        ctx = self.ctx
        language = ctx.language(request)
        text = ctx.translations.translate(language, "enrol.failed")
        if ctx.wants_json(request):
            return json_response(500, {"error": "enrol_failed", "message": text})
        prefix = ctx.mounted(request)
        link = prefix + "/phone"
        return ctx.pages.message(
            status=500, language=language, prefix=prefix, request=request, error="enrol_failed", text=text, link=link
        )

    async def confirmed(self, request: Request, identity: Identity, ch: Challenge) -> Identity | None:
        """The right code for an enrolment call: the app saves the number. The identity the
        user now has, or ``None`` when the app's hook failed (nothing is granted then)."""
        ctx = self.ctx
        try:
            result = self.on_phone_confirmed(identity.user_id, ch.phone)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("voice2fa: on_phone_confirmed failed; the number was not saved")
            return None
        country = region_of(ch.phone) or ""
        await ctx.audit("phone_confirmed", request, identity.user_id, challenge=ch.id, country=country)
        phone_tag = own_slot(ctx.keys.tag("phone", ch.phone))
        user_tag = ctx.keys.tag("user", identity.user_id)
        # Accounts (not confirmations) per number and day: a user's first confirmation of it.
        first, _ = await ctx.run(ctx.store.hit(f"enrolled:{user_key(user_tag)}:{phone_tag}", SHARED_WINDOW, ctx.now()))
        if first == 1:
            accounts, _ = await ctx.run(ctx.store.hit("enrolled:phone:" + phone_tag, SHARED_WINDOW, ctx.now()))
            if accounts >= self.settings.shared_phone_accounts:
                logger.warning("voice2fa: %d accounts confirmed the same number within a day", accounts)
                await ctx.audit("phone_shared", request, identity.user_id, accounts=accounts, country=country)
        # The proof is for the account as identify() now sees it (its version may follow the
        # phone), when that is the number just called; else for that number, the old version.
        now_seen = await ctx.identify_conn(request)
        if (
            now_seen is not None
            and now_seen.user_id == identity.user_id
            and check_phone(now_seen.phone, None).e164 == ch.phone
        ):
            return now_seen
        return Identity(identity.user_id, ch.phone, identity.version)


def run_sync_hook(hook: PhoneConfirmed) -> PhoneConfirmed:
    """``hook`` as the middleware calls it: a sync one in a worker thread (it may touch a
    database), an async one as it is."""
    if is_async_callable(hook):
        return hook

    async def in_thread(user_id: str, e164: str) -> None:
        await run_in_threadpool(hook, user_id, e164)

    return in_thread

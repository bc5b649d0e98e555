"""Phone enrolment: a number is confirmed by a call to it before the app saves it.

A signed-in user enters a number on the phone page (``_endpoints.enrol``); it is validated
like every number we call, and a challenge is started for it by the one pipeline
(``Challenger.start`` with the ``ENROL`` policy), charged to budgets of its own
(``Budgets.enrolment``), stricter than verification's: enrolment calls go to numbers the
user chose, the toll-fraud front door. The code is entered on the verify page. Only a right
code for a call to that very number calls the app's ``on_phone_confirmed(user_id, e164)``,
and the user is then verified for the new number.

An enrolment challenge is bound (``Challenger.binding``) to the user, the new number, the
``Identity.version`` and the number the user had: a verification challenge can never be
taken for an enrolment one, nor one made before the account changed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .._core.rules import Identity, is_async_callable
from .._stores.base import Challenge
from .._telephony.numbers import check_phone, region_of
from .._web.pages import json_response
from .budgets import SHARED_PHONE_WINDOW
from .challenge import ENROL, Challenger

logger = logging.getLogger("voice2fa")

PhoneConfirmed = Callable[[str, str], "Awaitable[None] | None"]


class Enrolment:
    """Starts enrolment challenges (through the one pipeline, with the ``ENROL`` policy) and
    finishes them with the app's ``on_phone_confirmed``."""

    def __init__(self, challenger: Challenger, on_phone_confirmed: PhoneConfirmed) -> None:
        self.challenger = challenger
        self.ctx = challenger.ctx
        self.settings = challenger.settings
        self.on_phone_confirmed = run_sync_hook(on_phone_confirmed)

    async def start(self, request: Request, identity: Identity, e164: str, next_url: str, language: str) -> Response:
        """Call ``e164`` with a new code, and send the user to the verify page to type it."""
        back = self.ctx.phone_url(request, next_url)
        return await self.challenger.start(request, ENROL, identity, e164, next_url, language, back=back)

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
        user_tag = ctx.keys.tag("user", identity.user_id)
        mine, everyone = self.challenger.budgets.enrolled(user_tag, ch.phone)
        # Accounts (not confirmations) per number and day: a user's first confirmation of it.
        first, _ = await ctx.run(ctx.store.hit(mine, SHARED_PHONE_WINDOW, ctx.now()))
        if first == 1:
            accounts, _ = await ctx.run(ctx.store.hit(everyone, SHARED_PHONE_WINDOW, ctx.now()))
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

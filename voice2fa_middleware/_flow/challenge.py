"""The one pipeline that starts a challenge and places its calls.

Verification (a protected route, for the phone the user has) and enrolment (the phone page,
for a number the user types) go through the same steps; what differs is a ``Policy`` value:
what the challenge is bound to, which budgets its calls are charged to, whether the pending
cookie marks it as an enrolment, and how an API client is answered.

The steps, for a first call (``Challenger.start``):

1. the provider is paused (a circuit breaker is open): a challenge already under way for
   this binding still goes to its verify page; otherwise a 503 that says when, and nothing
   is charged;
2. one atomic step of the store returns the user's live challenge for this binding (a
   second visit, another tab: no second call), or refuses a locked-out user (429) or a spent
   budget (429, naming the budget in the audit log), or charges the call and saves the new
   challenge;
3. the call is placed; when the provider does not accept it, the challenge is deleted and
   the charge given back (S26), and the user sees why;
4. the browser goes to the verify page with a new pending cookie (an API client gets JSON).

Another call for a live challenge (``Challenger.call_again``) charges the same budgets and
follows the same rule.

Before either, a user who reported a call ("press 9: I did not try to sign in") within
``reported_pause`` is refused (429) before anything is charged. And every call waits for its
slot of ``calls_per_second`` (a pacer in the store, shared by every worker) before it is
placed: within ``call_timeout``, else refused (503) and its charge given back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from .._core.crypto import generate_code, new_id
from .._core.rules import Identity
from .._core.urls import bounded_next
from .._errors import CallError, ProviderUnavailableError, StoreError
from .._settings import Voice2FASettings
from .._stores.base import Bucket, Challenge, challenge_id
from .._telephony.callers import SendsDigits, sends_digits
from .._telephony.numbers import check_phone, line_of, region_of, send_digits
from .._web.pages import json_response
from .budgets import SHARED, Budgets, CallBudgets
from .pending import Pending, Resubmission
from .runtime import Runtime
from .unsaved_work import SAFE_METHODS, background_answer, keep_form, same_site_referer

logger = logging.getLogger("voice2fa")

# The store key of the pacer of calls (one for the deployment: the provider's limit is per project).
PACER_KEY = "pace:calls"

# Seconds a user is told to wait after the provider failed (no connection, a server error):
# about the circuit breaker's first pause.
PROVIDER_RETRY_AFTER = 5

Phoneless = Literal["enrol", "refuse", "allow"]


def phoneless_mode(settings: Voice2FASettings, *, enrolment_enabled: bool) -> Phoneless:
    """What protected routes do for a signed-in user without a phone: the setting, else
    ``"enrol"`` when the phone page exists and ``"refuse"`` when it does not."""
    return settings.phoneless or ("enrol" if enrolment_enabled else "refuse")


@dataclass(frozen=True)
class Policy:
    """What makes a kind of challenge different; everything else is the same pipeline."""

    kind: Literal["verify", "enrol"]

    @property
    def enrolment(self) -> bool:
        return self.kind == "enrol"


VERIFY = Policy("verify")
ENROL = Policy("enrol")


class Challenger:
    """Creates challenges and places their calls; owns the call limits (S8) and lockout (S4)."""

    def __init__(self, ctx: Runtime, *, phoneless: Phoneless = "refuse", enrolment_enabled: bool = False) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        # Read on every protected request (by the handle): one attribute away.
        self.identify = ctx.identify
        self.identify_is_async = ctx.identify_is_async
        self.cookies = ctx.cookies
        self.clock = ctx.clock
        self.budgets = Budgets(ctx.settings, ctx.keys, calls_nobody=ctx.caller.calls_nobody)
        # Signed-in users without a phone: "enrol", "refuse" or "allow".
        self.phoneless: Phoneless = phoneless
        self.enrolment_enabled = enrolment_enabled

    # -- what a challenge is bound to, and charged to ------------------------------------------

    def binding(self, policy: Policy, identity: Identity, e164: str | None = None) -> str:
        """What a challenge is bound to (S23): a verification to the user, the phone called
        and the version; an enrolment also to the number the user had when it started."""
        if e164 is None:
            e164 = check_phone(identity.phone, self.ctx.allowed_regions).e164 or str(identity.phone)
        if policy.enrolment:
            fields = ["enrol", identity.user_id, e164, identity.version, identity.phone]
        else:
            fields = [identity.user_id, e164, identity.version]
        return self.ctx.keys.tag("binding", json.dumps(fields))

    def call_budgets(self, policy: Policy, conn: HTTPConnection, user_tag: str, e164: str) -> CallBudgets:
        client = self.ctx.client_address(conn)
        if policy.enrolment:
            return self.budgets.enrolment(user_tag, e164, client)
        return self.budgets.verification(user_tag, e164, client)

    def lockout(self, user_tag: str) -> Bucket:
        """The user's failure counter (S4)."""
        return self.budgets.lockout(user_tag)

    # -- a protected route, for a user without a proof -----------------------------------------

    async def challenge(
        self,
        request: Request,
        identity: Identity,
        next_url: str | None = None,
        fresh_within: int | None = None,
        *,
        body_unread: bool = False,
    ) -> Response:
        """The answer to a signed-in user without a fresh enough proof: for a page, the call
        and the verify page; for an API client, the call and a 401 with what it needs to
        verify; for a browser's background request, a 401 and no call (S30)."""
        ctx = self.ctx
        language = ctx.language(request)
        if next_url is None:
            next_url = bounded_next(request.url.path, request.url.query)
        kind = ctx.request_kind(request)
        if kind == "background":
            return background_answer(request, self.ctx, language, fresh_within)
        kept: Resubmission | None = None
        changes = kind == "page" and request.method not in SAFE_METHODS
        if changes:
            # A form posted while the verification had expired: after verifying, the user goes
            # back to the page the form was on, and the form is offered again when it can be kept.
            next_url = same_site_referer(request) or "/"
            kept = await keep_form(request, self.ctx, identity, next_url) if body_unread else None
        if identity.phone is None:
            return self._no_phone(request, next_url, language)
        phone = check_phone(identity.phone, ctx.allowed_regions, allow_voip=self.settings.allow_voip)
        if not phone.ok or phone.e164 is None:
            await ctx.audit("call_refused", request, identity.user_id, reason=f"phone_{phone.reason}")
            return ctx.error(request, 403, "phone", language=language, link=next_url, reason=phone.reason)
        if ctx.line_types is not None and await ctx.line_types.is_voip(phone.e164, identity.user_id):
            await ctx.audit("call_refused", request, identity.user_id, reason="phone_voip", source="lookup")
            return ctx.error(request, 403, "phone", language=language, link=next_url, reason="voip")
        response = await self.start(request, VERIFY, identity, phone.e164, next_url, language, back=next_url)
        if changes and response.status_code == 303:
            # The verify page says whether the changes were kept or not saved (S30).
            response.headers["location"] += "&kept=1" if kept is not None else "&unsaved=1"
            if kept is not None:
                ctx.cookies.set(response, request, "resubmit", kept.dumps(ctx.keys))
        return response

    def _no_phone(self, request: Request, next_url: str, language: str) -> Response:
        """A signed-in user without a phone: to the phone page, or a 403 that says so."""
        ctx = self.ctx
        if self.phoneless != "enrol":
            return ctx.error(request, 403, "no_phone", language=language, link="/")
        url = ctx.phone_url(request, next_url)
        if ctx.wants_json(request):
            body = {"error": "voice2fa_phone_required", "enrol_url": url}
            return json_response(401, body, {"www-authenticate": 'Voice2FA realm="voice2fa"'})
        return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})

    # -- the pipeline ---------------------------------------------------------------------------

    async def start(
        self,
        request: Request,
        policy: Policy,
        identity: Identity,
        e164: str,
        next_url: str,
        language: str,
        *,
        back: str,
    ) -> Response:
        """Call ``e164`` with a new code (or resume the live challenge), and send the user to
        the verify page. ``back``: where a refused call's page links to (try again)."""
        try:
            return await self._start(request, policy, identity, e164, next_url, language, back)
        except StoreError as exc:
            logger.error("voice2fa: store unavailable, failing closed: %s", exc)
            return self.ctx.error(request, 503, "store", language=language, retry_after=5, link=back)

    async def _start(
        self,
        request: Request,
        policy: Policy,
        identity: Identity,
        e164: str,
        next_url: str,
        language: str,
        back: str,
    ) -> Response:
        ctx = self.ctx
        now = ctx.now()
        user_tag = ctx.keys.tag("user", identity.user_id)
        binding = self.binding(policy, identity, e164)
        if (reported := await self.reported_for(user_tag)) > 0:
            await ctx.audit("call_refused", request, identity.user_id, reason="reported")
            return ctx.error(request, 429, "reported", language=language, retry_after=reported, link=back)
        if (left := ctx.caller.paused_for()) > 0:
            # The provider is failing (circuit open): no call, so no budget is charged. A
            # challenge already under way still goes to its verify page.
            live = await ctx.run(ctx.store.live_challenge(user_tag))
            if live is None or live.binding != binding:
                await ctx.audit(
                    "call_failed", request, identity.user_id, provider_status=0, reason="provider_unavailable"
                )
                return ctx.error(request, 503, "provider_unavailable", language=language, retry_after=left, link=back)
            return self._to_verify(request, policy, live, user_tag, next_url)
        challenge = self._new_challenge(user_tag, e164, binding, language, now)
        budgets = self.call_budgets(policy, request, user_tag, e164)
        started = await ctx.run(
            ctx.store.start(
                challenge,
                lockout=self.lockout(user_tag),
                known_key=budgets.known_key,
                known=budgets.known,
                new=budgets.new,
                now=now,
            )
        )
        if started.locked_for:
            await ctx.audit("call_refused", request, identity.user_id, reason="lockout")
            return ctx.error(request, 429, "locked", language=language, retry_after=started.locked_for, link=back)
        if started.wait or started.challenge is None:
            spent = await self._spent(budgets)
            return await self.refused(request, identity.user_id, spent, started.wait or 1.0, language, back)
        if not started.created:
            return self._to_verify(request, policy, started.challenge, user_tag, next_url)
        country = region_of(e164) or ""
        await ctx.audit("challenge_created", request, identity.user_id, challenge=challenge.id, country=country)
        failure = await self._dial(request, challenge, challenge.call_nonce, identity.user_id, back)
        if failure is not None:
            await ctx.run(ctx.store.delete(challenge.id))
            await self._refund(started.charged)
            return failure
        return self._to_verify(request, policy, challenge, user_tag, next_url)

    def _new_challenge(self, user_tag: str, e164: str, binding: str, language: str, now: float) -> Challenge:
        """A new challenge for a call to ``e164``, its first call installed: a new code (kept
        in plain only until the call speaks it) under a new call nonce."""
        s, keys = self.settings, self.ctx.keys
        cid, code = challenge_id(user_tag), generate_code(s.code_digits)
        return Challenge(
            id=cid,
            user_tag=user_tag,
            phone=e164,
            code_mac=keys.code_mac(cid, code),
            code=code,
            created_at=now,
            expires_at=now + s.code_ttl,
            language=language,
            binding=binding,
            calls=1,
            last_call_at=now,
            call_nonce=new_id(12),
            call_status="queued",
        )

    def _to_verify(
        self, request: Request, policy: Policy, challenge: Challenge, user_tag: str, next_url: str
    ) -> Response:
        """The verify page (a 303), or for API clients JSON with its URLs and CSRF token: 401
        for a verification (the route asked for needs the factor), 202 for an enrolment (the
        call asked for is on its way). The pending cookie is set anew, unless this browser
        already holds one for this very challenge."""
        ctx = self.ctx
        held = ctx.pending(request)
        if held is not None and held.challenge_id == challenge.id and held.user_tag == user_tag:
            pending, set_cookie = held, False
        else:
            pending, set_cookie = Pending.new(challenge.id, user_tag, next_url, enrolment=policy.enrolment), True
        verify_url = ctx.verify_url(request, pending.next_url if not set_cookie else next_url)
        response: Response
        if ctx.wants_json(request):
            mounted = ctx.mounted(request)
            urls = {
                "verify_url": verify_url,
                "status_url": f"{mounted}/verify/status",
                "resend_url": f"{mounted}/resend",
                "cancel_url": f"{mounted}/cancel",
                "csrf_token": pending.csrf_token,
                # For a client that keeps no cookies: the pending cookie's value, to send in
                # the X-Voice2FA-Challenge header to the URLs above.
                "challenge_token": pending.dumps(ctx.keys),
            }
            if policy.enrolment:
                response = json_response(202, {"status": "calling", **urls})
            else:
                response = json_response(
                    401, {"error": "voice2fa_required", **urls}, {"www-authenticate": 'Voice2FA realm="voice2fa"'}
                )
        else:
            response = RedirectResponse(verify_url, status_code=303, headers={"cache-control": "no-store"})
        if set_cookie:
            ctx.cookies.set(response, request, "pending", pending.dumps(ctx.keys))
        return response

    # -- budgets ----------------------------------------------------------------------------------

    async def _spent(self, budgets: CallBudgets) -> list[Bucket]:
        """The buckets that are at their limit, of those the call would have been charged to."""
        ctx, now = self.ctx, self.ctx.now()
        count, _left = await ctx.run(ctx.store.peek(budgets.known_key, now))
        spent = []
        for bucket in budgets.known if count else budgets.new:
            used, _left = await ctx.run(ctx.store.peek(bucket.key, now))
            if used >= bucket.limit:
                spent.append(bucket)
        return spent

    async def refused(
        self, request: Request, user_id: str, spent: Sequence[Bucket], wait: float, language: str, link: str
    ) -> Response:
        """The one 429 for a call a spent budget refused: which budget is in the audit log
        (and a warning, for a shared one)."""
        ctx = self.ctx
        await ctx.audit("call_refused", request, user_id, reason="rate_limited")
        for bucket in spent:
            if bucket.name in SHARED:  # spent by many users together: an operator should look
                logger.warning("voice2fa: the %s call budget is spent for %d s", bucket.name, wait)
            await ctx.audit("budget_exhausted", request, user_id, budget=bucket.name, limit=bucket.limit)
        return ctx.error(request, 429, "rate_limited", language=language, retry_after=wait, link=link)

    async def _refund(self, charged: Sequence[Bucket]) -> None:
        """Give back what a call the provider did not accept was charged (S26). Best effort:
        a store that fails here costs the user a hit of their budget, never an error page."""
        if not charged:
            return
        try:
            await self.ctx.run(self.ctx.store.refund(charged, self.ctx.now()))
        except StoreError as exc:
            logger.warning("voice2fa: could not give back the budget of a call never placed: %s", exc)

    async def remember_phone(self, user_tag: str, e164: str) -> None:
        """After a verification: this user holds this phone (their calls get their own
        budgets), for ``known_phone_days`` from this verification (a sliding window)."""
        ctx = self.ctx
        key = self.budgets.known_phone_key(user_tag, e164)
        await ctx.run(ctx.store.hit(key, self.settings.known_phone_days * 86400, ctx.now(), renew=True))

    async def reported_for(self, user_tag: str) -> float:
        """Seconds calls to the user stay paused after they reported one (0: not paused)."""
        if self.settings.reported_pause <= 0:
            return 0.0
        count, left = await self.ctx.run(self.ctx.store.peek(self.budgets.reported(user_tag).key, self.ctx.now()))
        return max(left, 1.0) if count else 0.0

    async def locked_for(self, user_tag: str, now: float) -> float:
        """Seconds until the user's lockout ends (0: not locked)."""
        count, left = await self.ctx.run(self.ctx.store.peek(self.lockout(user_tag).key, now))
        return left if count >= self.settings.lockout_failures else 0.0

    def resend_in(self, ch: Challenge) -> int:
        """Seconds until another call may be asked for."""
        now = self.ctx.now()
        if ch.calls >= self.settings.max_calls_per_challenge:
            return max(0, int(ch.expires_at - now))
        return max(0, int(ch.last_call_at + self.settings.resend_cooldown - now + 0.999)) if ch.last_call_at else 0

    # -- another call for a live challenge ---------------------------------------------------------

    async def call_again(
        self, request: Request, policy: Policy, challenge: Challenge, user_id: str, language: str, back: str
    ) -> Response | None:
        """Another call for a live challenge, with a new code; ``None`` when it was placed.
        Charged to the same budgets as its first call; nothing is charged while the provider
        is paused, and the charge is given back when the provider does not accept the call."""
        ctx, s = self.ctx, self.settings
        if (reported := await self.reported_for(challenge.user_tag)) > 0:
            await ctx.audit("call_refused", request, user_id, reason="reported")
            return ctx.error(request, 429, "reported", language=language, retry_after=reported, link=back)
        if (left := ctx.caller.paused_for()) > 0:
            await ctx.audit("call_failed", request, user_id, provider_status=0, reason="provider_unavailable")
            return ctx.error(request, 503, "provider_unavailable", language=language, retry_after=left, link=back)
        budgets = self.call_budgets(policy, request, challenge.user_tag, challenge.phone)
        count, _left = await ctx.run(ctx.store.peek(budgets.known_key, ctx.now()))
        charged = budgets.known if count else budgets.new
        wait = await ctx.run(ctx.store.take(charged, ctx.now()))
        if wait:
            return await self.refused(request, user_id, await self._spent(budgets), wait, language, back)
        code = generate_code(s.code_digits)
        nonce = new_id(12)
        try:
            granted = await ctx.run(
                ctx.store.begin_call(
                    challenge.id,
                    code_mac=ctx.keys.code_mac(challenge.id, code),
                    code=code,
                    call_nonce=nonce,
                    now=ctx.now(),
                    cooldown=s.resend_cooldown,
                    max_calls=s.max_calls_per_challenge,
                )
            )
        except StoreError:
            await self._refund(charged)
            raise
        del code
        if granted is None:
            await self._refund(charged)
            return ctx.error(request, 400, "no_challenge", language=language, link=back)
        if granted > 0:
            await self._refund(charged)
            await ctx.audit("call_refused", request, user_id, reason="cooldown")
            return ctx.error(request, 429, "rate_limited", language=language, retry_after=granted, link=back)
        failure = await self._dial(request, challenge, nonce, user_id, back)
        if failure is not None:
            # The code the user already heard keeps working.
            await ctx.run(ctx.store.rollback_call(challenge.id, nonce, challenge))
            await self._refund(charged)
        return failure

    # -- the call ----------------------------------------------------------------------------------

    async def _pace(self) -> float:
        """Wait for this call's slot of ``calls_per_second``, shared by every worker through the
        store (each call takes the next free slot); returns ``0`` once it may be placed, or the
        seconds to come back in when its slot is further off than ``call_timeout`` (then no
        slot is taken). Development callers call no one: they are not paced. A store that
        cannot pace (without ``reserve_slot``, or failing) lets the call go: the provider's
        own 429 is back-pressure the caller waits out."""
        ctx, s = self.ctx, self.settings
        reserve = getattr(ctx.store, "reserve_slot", None)
        if s.calls_per_second <= 0 or ctx.caller.calls_nobody or reserve is None:
            return 0.0
        try:
            wait = float(await ctx.run(reserve(PACER_KEY, 1.0 / s.calls_per_second, ctx.now(), s.call_timeout)))
        except StoreError as exc:
            logger.warning("voice2fa: could not pace the call (placing it now): %s", exc)
            return 0.0
        if wait > s.call_timeout:
            return wait
        if wait > 0:
            await anyio.sleep(wait)  # this request waits; the event loop does not
        return 0.0

    async def _dial(
        self, request: Request, challenge: Challenge, nonce: str, user_id: str, link: str
    ) -> Response | None:
        """Ask the provider to place the call whose code is installed under ``nonce``:
        ``None`` when it was placed (or may have been), else the page that says why not."""
        ctx, s = self.ctx, self.settings
        token = ctx.keys.call.dumps([challenge.id, nonce])
        base = ctx.base_url(request) + ctx.mounted(request)
        region = region_of(challenge.phone) or ""
        about: dict[str, str | int] = {"challenge": challenge.id, "country": region}
        if (later := await self._pace()) > 0:
            # More calls are asked for than the provider takes per second: come back later.
            logger.warning("voice2fa: calls over calls_per_second=%s; refused for %.0f s", s.calls_per_second, later)
            await ctx.audit("call_refused", request, user_id, reason="paced", country=region)
            return ctx.error(request, 503, "calls_busy", link=link, retry_after=later)
        to, digits = line_of(challenge.phone), send_digits(challenge.phone)
        from_ = s.from_numbers.get(region, ctx.from_number)
        urls = {"laml_url": f"{base}/laml/{token}", "status_url": f"{base}/status/{token}"}
        started = time.perf_counter()
        outcome = "placed"
        try:
            with ctx.telemetry.span("voice2fa.create_call", request.headers, "client", **about):
                with anyio.fail_after(s.call_timeout + 1):  # anyio's: callers may use its shields
                    if digits and sends_digits(ctx.caller):  # an extension, pressed once connected
                        capable = cast(SendsDigits, ctx.caller)
                        sid = await capable.place_call(to=to, from_=from_, **urls, send_digits=digits)
                    else:  # a caller that cannot press keys: the user reaches the extension
                        sid = await ctx.caller.place_call(to=to, from_=from_, **urls)
        except Exception as exc:  # any failure of the caller: a clear page, never a 500
            outcome = "failed"
            error = exc if isinstance(exc, CallError) else None
            status = error.status if error is not None else None
            failed: dict[str, str | int] = {
                **about,
                "provider_status": status or 0,
                "provider_code": (error.code or "") if error else "",
            }
            if error is not None and error.maybe_placed:
                # The request may have reached the provider (a read timeout, a lost answer):
                # the call may still ring. Never call twice: keep its code (and its charge)
                # and go on to the verify page; asking for another call waits for the cooldown.
                logger.warning("voice2fa: the call may have been placed (status=%s); not calling again", status)
                await ctx.audit("call_failed", request, user_id, **failed, maybe_placed=1)
                return None
            if isinstance(exc, ProviderUnavailableError):  # circuit open: nothing was sent
                await ctx.audit("call_failed", request, user_id, **failed, reason="provider_unavailable")
                return ctx.error(request, 503, "provider_unavailable", link=link, retry_after=exc.retry_after or 30)
            logger.warning("voice2fa: the call could not be placed (status=%s)", status)
            await ctx.audit("call_failed", request, user_id, **failed)
            if error is not None and error.retry_after:  # a 429/503 that outlasted the deadline
                return ctx.error(request, 503, "call_failed", link=link, retry_after=error.retry_after)
            if status is None or status >= 500:
                # The provider failed (no connection, a server error): an outage, most likely
                # short. A 503 that says when to try again, not a bare 502.
                return ctx.error(request, 503, "call_failed", link=link, retry_after=PROVIDER_RETRY_AFTER)
            return ctx.error(request, 502, "call_failed", link=link)  # the provider refused this call
        finally:
            elapsed = time.perf_counter() - started
            ctx.telemetry.record("voice2fa.provider.create_call.duration", elapsed, {"voice2fa.outcome": outcome})
        # The call's sid is bound to the challenge by the first signed webhook about it (the
        # carrier fetching the LaML, or a status callback), as when that webhook comes before
        # Create Call's answer: no store write here, one round trip per challenge.
        if ctx.caller.calls_nobody:
            ctx.note_dev_call(str(sid), challenge.user_tag)
        await ctx.audit("call_placed", request, user_id, **about, call_sid=str(sid)[:64])
        return None


"""Starting a challenge: lockout and call limits, a new code in the store, the call, and the
pending cookie that sends the browser (or API client) to the verify page."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from ._callers import ConsoleCaller
from ._context import Context, client_group
from ._crypto import generate_code, new_id
from ._errors import CallError, ProviderUnavailableError, StoreError
from ._pages import json_response
from ._phone import check_phone, region_of
from ._rules import Identity
from ._store import Bucket, Challenge, challenge_id, own_slot, user_key
from ._urls import safe_next

logger = logging.getLogger("voice2fa")

# The page to go back to travels in the pending cookie and the verify URL: bounded, so a long
# link cannot outgrow what browsers keep in a cookie (4 KB) and make every visit a new call.
MAX_NEXT = 1024
DEV_BUDGET_SCALE = 100


def bounded_next(path: str, query: str) -> str:
    """Where to go after verifying: the URL asked for, its path if that is too long, else ``/``."""
    full = path + ("?" + query if query else "")
    if len(full) <= MAX_NEXT:
        return full
    return path if len(path) <= MAX_NEXT else "/"


def new_challenge(ctx: Context, user_tag: str, e164: str, binding: str, language: str, now: float) -> Challenge:
    """A new challenge for a call to ``e164``, its first call installed: a new code (kept in
    plain only until the call speaks it) under a new call nonce."""
    s, keys = ctx.settings, ctx.keys
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


class Challenger:
    """Creates challenges and places their calls; owns the call limits (S8) and lockout (S4)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        # Read on every protected request (by the handle): one attribute away.
        self.identify = ctx.identify
        self.identify_is_async = ctx.identify_is_async
        self.cookies = ctx.cookies
        self.clock = ctx.clock
        # The console caller calls no one, so its calls cost nothing: its hourly budgets are
        # relaxed, so that trying the demo again and again works.
        self.budget_scale = DEV_BUDGET_SCALE if isinstance(ctx.caller, ConsoleCaller) else 1
        # Signed-in users without a phone: "enrol", "refuse" or "allow" (set by the middleware).
        self.phoneless = ctx.settings.phoneless or "refuse"
        self.enrolment_enabled = False

    async def challenge(self, request: Request, identity: Identity) -> Response:
        """The answer to a signed-in user without a fresh enough proof."""
        ctx = self.ctx
        language = ctx.language(request)
        next_url = bounded_next(request.url.path, request.url.query)
        if identity.phone is None:
            return self._no_phone(request, next_url, language)
        try:
            return await self._start(request, identity, next_url, language)
        except StoreError as exc:
            logger.error("voice2fa: store unavailable, failing closed: %s", exc)
            return ctx.error(request, 503, "store", language=language, retry_after=5, link=next_url)

    def _no_phone(self, request: Request, next_url: str, language: str) -> Response:
        """A signed-in user without a phone: to the phone page, or a 403 that says so."""
        ctx = self.ctx
        if self.phoneless != "enrol":
            return ctx.error(request, 403, "no_phone", language=language, link="/")
        url = f"{ctx.mounted(request)}/phone?" + urlencode({"next": next_url})
        if ctx.wants_json(request):
            body = {"error": "voice2fa_phone_required", "enrol_url": url}
            return json_response(401, body, {"www-authenticate": 'Voice2FA realm="voice2fa"'})
        return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})

    def binding(self, identity: Identity, e164: str | None = None) -> str:
        """What a challenge is bound to (S23): the user, the phone called, the version."""
        if e164 is None:
            e164 = check_phone(identity.phone, self.ctx.allowed_regions).e164 or str(identity.phone)
        return self.ctx.keys.tag("binding", json.dumps([identity.user_id, e164, identity.version]))

    def lockout(self, user_tag: str) -> Bucket:
        """The user's failure counter (S4)."""
        return Bucket("fail:" + user_key(user_tag), self.settings.lockout_failures, self.settings.lockout_window)

    async def _start(self, request: Request, identity: Identity, next_url: str, language: str) -> Response:
        ctx = self.ctx
        now = ctx.now()
        user_tag = ctx.keys.tag("user", identity.user_id)
        phone = check_phone(identity.phone, ctx.allowed_regions)
        if not phone.ok or phone.e164 is None:
            await ctx.audit("call_refused", request, identity.user_id, reason=f"phone_{phone.reason}")
            return ctx.error(request, 403, "phone", language=language, link=next_url, reason=phone.reason)
        binding = self.binding(identity, phone.e164)
        paused = getattr(ctx.caller, "paused_for", None)
        if paused is not None and (left := paused()) > 0:
            # The provider is failing (circuit open): no call, so no budget is charged. A
            # challenge already under way still goes to its verify page.
            live = await ctx.run(ctx.store.live_challenge(user_tag))
            if live is None or live.binding != binding:
                user_id = identity.user_id
                await ctx.audit("call_failed", request, user_id, provider_status=0, reason="provider_unavailable")
                return ctx.error(
                    request, 503, "provider_unavailable", language=language, retry_after=left, link=next_url
                )
        # The challenge this visit would start, its first call installed: one step of the
        # store either returns the user's live challenge (a second visit, another tab or
        # browser: no second call) or checks the lockout, charges the budgets and saves it.
        challenge = new_challenge(ctx, user_tag, phone.e164, binding, language, now)
        nonce = challenge.call_nonce
        known_key, known, new = self.call_buckets(request, user_tag, phone.e164)
        lockout = self.lockout(user_tag)
        started = await ctx.run(
            ctx.store.start(challenge, lockout=lockout, known_key=known_key, known=known, new=new, now=now)
        )
        if started.locked_for:
            await ctx.audit("call_refused", request, identity.user_id, reason="lockout")
            return ctx.error(request, 429, "locked", language=language, retry_after=started.locked_for, link=next_url)
        if started.wait or started.challenge is None:
            return await self._refused(request, identity.user_id, user_tag, phone.e164, started.wait or 1.0)
        if not started.created:
            live = started.challenge
            pending = ctx.pending(request)
            if pending is not None and pending["c"] == live.id and pending["u"] == user_tag:
                return self._to_verify(request, next_url, pending, set_cookie=False)
            payload = {"c": live.id, "u": user_tag, "x": new_id(), "n": next_url}
            return self._to_verify(request, next_url, payload, set_cookie=True)
        await ctx.audit(
            "challenge_created", request, identity.user_id, challenge=challenge.id, country=region_of(phone.e164) or ""
        )
        failure = await self._dial(request, challenge, nonce, identity.user_id, first=True)
        if failure is not None:
            await ctx.run(ctx.store.delete(challenge.id))
            return failure
        payload = {"c": challenge.id, "u": user_tag, "x": new_id(), "n": next_url}
        return self._to_verify(request, next_url, payload, set_cookie=True)

    def _to_verify(self, request: Request, next_url: str, pending: dict[str, str], *, set_cookie: bool) -> Response:
        ctx = self.ctx
        verify_url = ctx.verify_url(request, next_url)
        mounted = ctx.mounted(request)
        response: Response
        if ctx.wants_json(request):
            response = json_response(
                401,
                {
                    "error": "voice2fa_required",
                    "verify_url": verify_url,
                    "status_url": f"{mounted}/verify/status",
                    "resend_url": f"{mounted}/resend",
                    "cancel_url": f"{mounted}/cancel",
                    "csrf_token": pending["x"],
                },
                {"www-authenticate": 'Voice2FA realm="voice2fa"'},
            )
        else:
            response = RedirectResponse(verify_url, status_code=303, headers={"cache-control": "no-store"})
        if set_cookie:
            ctx.cookies.set(response, request, "pending", ctx.keys.pending.dumps(pending))
        return response

    def call_buckets(self, conn: HTTPConnection, user_tag: str, e164: str) -> tuple[str, list[Bucket], list[Bucket]]:
        """The budgets a call to ``e164`` for this user is charged to (S8, S21): the counter
        that says whether the user verified this phone before, and the budgets for each case.

        A user who verified this phone before is charged to budgets of their own: accounts
        that never proved they hold the phone (an attacker's, registered with the victim's
        number) spend the phone's shared budget and the deployment's "new" budget, and cannot
        starve the phone's owner. Trade-off: first-time users can still be kept waiting by a
        flood of new accounts, until the deployment's "new" budget resets.

        Keys carry Redis Cluster hash tags: the user's own in the user's slot, the phone's and
        the client's each in a slot of its own (see ``user_key``).
        """
        s, keys, x = self.settings, self.ctx.keys, self.budget_scale
        user, phone_tag = user_key(user_tag), keys.tag("phone", e164)
        client_tag = keys.tag("client", client_group(self.ctx.client_address(conn)))
        client = Bucket("calls:client:" + own_slot(client_tag), s.calls_per_client_per_hour * x, 3600)
        own = Bucket("calls:user:" + user, s.calls_per_user_per_hour * x, 3600)
        known = [
            Bucket("calls:all:known", s.calls_per_hour * x, 3600),
            Bucket(f"calls:known:{user}:{phone_tag}", s.calls_per_phone_per_hour * x, 3600),
            own,
            client,
        ]
        new = [
            Bucket("calls:all", s.calls_per_hour * x, 3600),
            Bucket("calls:phone:" + own_slot(phone_tag), s.calls_per_phone_per_hour * x, 3600),
            own,
            client,
        ]
        return f"known:{user}:{phone_tag}", known, new

    async def take_budget(self, request: Request, user_id: str, user_tag: str, e164: str) -> Response | None:
        """Charge one more call to its budgets; the 429 that refuses it, when one is spent."""
        ctx = self.ctx
        known_key, known, new = self.call_buckets(request, user_tag, e164)
        count, _left = await ctx.run(ctx.store.peek(known_key, ctx.now()))
        wait = await ctx.run(ctx.store.take(known if count else new, ctx.now()))
        return await self._refused(request, user_id, user_tag, e164, wait) if wait else None

    async def _refused(self, request: Request, user_id: str, user_tag: str, e164: str, wait: float) -> Response:
        """The 429 for a call that a spent budget refused; which budget is in the audit log."""
        ctx, now = self.ctx, self.ctx.now()
        await ctx.audit("call_refused", request, user_id, reason="rate_limited")
        known_key, known, new = self.call_buckets(request, user_tag, e164)
        count, _left = await ctx.run(ctx.store.peek(known_key, now))
        for bucket in known if count else new:
            count, left = await ctx.run(ctx.store.peek(bucket.key, now))
            if count >= bucket.limit:
                scope = bucket.key.split(":")[1]  # all, known, phone, user, client
                if scope in ("all", "phone"):  # shared budgets: an operator should look
                    logger.warning("voice2fa: the %s call budget is spent for %d s", scope, left)
                await ctx.audit("budget_exhausted", request, user_id, budget=scope, limit=bucket.limit)
        back = (
            ctx.pending_next(request) if request.method == "POST" else bounded_next(request.url.path, request.url.query)
        )
        return ctx.error(request, 429, "rate_limited", retry_after=wait, link=back)

    async def remember_phone(self, user_tag: str, e164: str) -> None:
        """After a verification: this user holds this phone (their calls get their own budgets)."""
        ctx = self.ctx
        key = f"known:{user_key(user_tag)}:{ctx.keys.tag('phone', e164)}"
        await ctx.run(ctx.store.hit(key, self.settings.known_phone_days * 86400, ctx.now()))

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

    async def place_call(self, request: Request, challenge: Challenge, user_id: str) -> Response | None:
        """Another call for a live challenge, with a new code; ``None`` when it was placed."""
        ctx, s = self.ctx, self.settings
        code = generate_code(s.code_digits)
        nonce = new_id(12)
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
        del code
        if granted is None:
            return ctx.error(request, 400, "no_challenge", link=ctx.pending_next(request))
        if granted > 0:
            await ctx.audit("call_refused", request, user_id, reason="cooldown")
            return ctx.error(request, 429, "rate_limited", retry_after=granted, link=ctx.pending_next(request))
        return await self._dial(request, challenge, nonce, user_id, first=False)

    async def _dial(
        self, request: Request, challenge: Challenge, nonce: str, user_id: str, *, first: bool
    ) -> Response | None:
        """Ask the provider to place the call whose code is installed under ``nonce``."""
        ctx, s = self.ctx, self.settings
        token = ctx.keys.call.dumps([challenge.id, nonce])
        base = ctx.base_url(request) + ctx.mounted(request)
        about: dict[str, str | int] = {"challenge": challenge.id, "country": region_of(challenge.phone) or ""}
        started = time.perf_counter()
        outcome = "placed"
        try:
            with ctx.telemetry.span("voice2fa.create_call", request.headers, "client", **about):
                with anyio.fail_after(s.call_timeout + 1):  # anyio's: callers may use its shields
                    sid = await ctx.caller.place_call(
                        to=challenge.phone,
                        from_=ctx.from_number,
                        laml_url=f"{base}/laml/{token}",
                        status_url=f"{base}/status/{token}",
                    )
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
                # the call may still ring. Never call twice: keep its code and go on to the
                # verify page; asking for another call waits for the usual cooldown.
                logger.warning("voice2fa: the call may have been placed (status=%s); not calling again", status)
                await ctx.audit("call_failed", request, user_id, **failed, maybe_placed=1)
                return None
            if not first:  # the code the user already heard keeps working
                await ctx.run(ctx.store.rollback_call(challenge.id, nonce, challenge))
            link = safe_next(request.url.path) or "/" if first else ctx.pending_next(request)
            if isinstance(exc, ProviderUnavailableError):  # circuit open: nothing was sent
                await ctx.audit("call_failed", request, user_id, **failed, reason="provider_unavailable")
                return ctx.error(request, 503, "provider_unavailable", link=link, retry_after=exc.retry_after or 30)
            logger.warning("voice2fa: the call could not be placed (status=%s)", status)
            await ctx.audit("call_failed", request, user_id, **failed)
            if error is not None and error.retry_after:  # a 429/503 that outlasted the deadline
                return ctx.error(request, 503, "call_failed", link=link, retry_after=error.retry_after)
            return ctx.error(request, 502, "call_failed", link=link)
        finally:
            elapsed = time.perf_counter() - started
            ctx.telemetry.record("voice2fa.provider.create_call.duration", elapsed, {"voice2fa.outcome": outcome})
        # The call's sid is bound to the challenge by the first signed webhook about it (the
        # carrier fetching the LaML, or a status callback), as when that webhook comes before
        # Create Call's answer: no store write here, one round trip per challenge.
        await ctx.audit("call_placed", request, user_id, **about, call_sid=str(sid)[:64])
        return None

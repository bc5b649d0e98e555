"""Support tasks: what an operator needs when a user calls the help desk.

``middleware.support`` (the running app's store) and ``voice2fa support <action> <user_id>``
(a shared store: ``VOICE2FA_REDIS_URL``) offer the same actions:

- ``state``: the live challenge (status, expiry, calls), the lockout and when it ends, the
  user's own budgets (calls, enrolment calls, and a known phone's when the phone is given or
  the live challenge names it), when remembered devices were last forgotten;
- ``lift_lockout``: the user's wrong-code count back to zero;
- ``reset_budgets``: the user's own call budgets back to zero (shared ones, per phone number
  or client network, are not the user's: they are left alone);
- ``forget_devices``: every "remember this device" of the user ends (``_flow.devices``);
- ``cancel_challenge``: the live challenge ends (its code stops working).

Each action writes a ``support`` audit event naming the action and the operator. A user id
is all it takes: the store keys are keyed tags of it, so the same secret key is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._core.audit import AuditEvent, AuditHook, emit
from ._core.crypto import Keyring
from ._flow.budgets import Budgets
from ._flow.devices import RememberedDevices
from ._flow.runtime import Runtime
from ._settings import Voice2FASettings
from ._stores.base import Bucket, Store
from ._telephony.numbers import check_phone, mask

ACTIONS = ("state", "lift-lockout", "reset-budgets", "forget-devices", "cancel-challenge")
_OWN_BUDGETS = ("user", "known_phone")
_NO_CLIENT = "-"  # the client budgets are not a user's: any address builds the user's buckets


@dataclass(frozen=True)
class BudgetState:
    used: int
    limit: int
    resets_in: float


@dataclass(frozen=True)
class UserState:
    """What support sees of one user (never a code nor a full phone number)."""

    user_id: str
    challenge: dict[str, Any] | None
    """The live challenge: ``status``, ``expires_in``, ``calls``, ``attempts``, ``phone`` (masked)."""
    locked_for: float
    failures: int
    budgets: dict[str, BudgetState] = field(default_factory=dict)
    phone: str | None = None
    """The phone the budgets were computed for (masked), when known."""
    devices_forgotten_at: float = 0.0


class Support:
    """The support tasks on one store (see the module)."""

    def __init__(
        self,
        settings: Voice2FASettings,
        store: Store,
        *,
        keys: Keyring | None = None,
        clock: Callable[[], float] = time.time,
        audit: Callable[..., Awaitable[None]] | None = None,
        on_event: AuditHook | None = None,
        devices: RememberedDevices | None = None,
        calls_nobody: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys or Keyring(settings.secret_keys)
        self.clock = clock
        self.budgets = Budgets(settings, self.keys, calls_nobody=calls_nobody)
        self.devices = devices or RememberedDevices(store, self.keys, settings.remember_days, clock)
        self._audit = audit
        self._on_event = on_event

    @classmethod
    def of(cls, ctx: Runtime) -> Support:
        """The support tasks of a running middleware (its store, keys, clock and audit hook)."""
        return cls(
            ctx.settings,
            ctx.store,
            keys=ctx.keys,
            clock=ctx.clock,
            audit=ctx.audit,
            devices=ctx.devices,
            calls_nobody=ctx.caller.calls_nobody,
        )

    async def _record(self, user_id: str, action: str, operator: str, **detail: str | int | float) -> None:
        if self._audit is not None:
            await self._audit("support", None, user_id, action=action, operator=operator, **detail)
        else:
            event = AuditEvent(
                "support", user_id, None, self.clock(), {"action": action, "operator": operator, **detail}
            )
            await emit(self._on_event, event)

    def _tag(self, user_id: str) -> str:
        return self.keys.tag("user", user_id)

    def _own_buckets(self, user_id: str, phone: str | None) -> list[Bucket]:
        tag = self._tag(user_id)
        verification = self.budgets.verification(tag, phone or "+0", _NO_CLIENT)
        names = _OWN_BUDGETS if phone else ("user",)
        own = [b for b in verification.known if b.name in names]
        own += [b for b in self.budgets.enrolment(tag, phone or "+0", _NO_CLIENT).known if b.name == "enrol_user"]
        return own

    async def state(self, user_id: str, phone: str | None = None) -> UserState:
        """The user's state. ``phone`` (E.164): also that number's budget of this user; by
        default the live challenge's number."""
        now = self.clock()
        tag = self._tag(user_id)
        live = await self.store.live_challenge(tag)
        challenge = None
        if live is not None:
            challenge = {
                "status": live.call_status or "queued",
                "expires_in": max(0, int(live.expires_at - now)),
                "calls": live.calls,
                "attempts": live.attempts,
                "phone": mask(live.phone),
            }
        e164 = check_phone(phone, None).e164 if phone else (live.phone if live is not None else None)
        failures, left = await self.store.peek(self.budgets.lockout(tag).key, now)
        locked_for = float(left) if failures >= self.settings.lockout_failures else 0.0
        budgets = {}
        for bucket in self._own_buckets(user_id, e164):
            used, resets = await self.store.peek(bucket.key, now)
            budgets[bucket.name] = BudgetState(int(used), bucket.limit, round(float(resets), 1))
        forgotten = await self.devices.forgotten_at(user_id)
        return UserState(
            user_id=user_id,
            challenge=challenge,
            locked_for=round(locked_for, 1),
            failures=int(failures),
            budgets=budgets,
            phone=mask(e164) if e164 else None,
            devices_forgotten_at=round(forgotten, 1),
        )

    async def lift_lockout(self, user_id: str, *, operator: str) -> None:
        """The user's wrong codes forgotten: they may try again at once."""
        await self.store.clear(self.budgets.lockout(self._tag(user_id)).key)
        await self._record(user_id, "lift_lockout", operator)

    async def reset_budgets(self, user_id: str, *, operator: str, phone: str | None = None) -> list[str]:
        """The user's own call budgets back to zero (and their budget for ``phone``, given as
        E.164). Returns the budgets' names."""
        e164 = check_phone(phone, None).e164 if phone else None
        buckets = self._own_buckets(user_id, e164)
        for bucket in buckets:
            await self.store.clear(bucket.key)
        names = [b.name for b in buckets]
        await self._record(user_id, "reset_budgets", operator, budgets=",".join(names))
        return names

    async def forget_devices(self, user_id: str, *, operator: str) -> None:
        """Every remembered device of the user must verify again (at its next use; other
        processes of the app see it within a minute)."""
        await self.devices.forget(user_id)
        await self._record(user_id, "forget_devices", operator)

    async def cancel_challenge(self, user_id: str, *, operator: str) -> bool:
        """End the user's live challenge; ``True`` when there was one."""
        live = await self.store.live_challenge(self._tag(user_id))
        if live is not None:
            await self.store.delete(live.id)
        await self._record(user_id, "cancel_challenge", operator, found=int(live is not None))
        return live is not None


# -- the command line: voice2fa support <action> <user_id> -----------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument("user_id", help="the user's id, as identify() returns it")
    parser.add_argument("--operator", default=None, help="who does it, for the audit log (default: $USER)")
    parser.add_argument("--phone", default=None, help="E.164: also this number's budget of the user")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--env-file", default=".env", help="the .env file to read, as the app does (default: .env)")


async def run_action(support: Support, action: str, user_id: str, operator: str, phone: str | None) -> dict[str, Any]:
    """One action; its result as a JSON-able dict."""
    if action == "state":
        return asdict(await support.state(user_id, phone))
    if action == "lift-lockout":
        await support.lift_lockout(user_id, operator=operator)
        return {"lifted": True}
    if action == "reset-budgets":
        return {"reset": await support.reset_budgets(user_id, operator=operator, phone=phone)}
    if action == "forget-devices":
        await support.forget_devices(user_id, operator=operator)
        return {"forgotten": True}
    return {"canceled": await support.cancel_challenge(user_id, operator=operator)}


def command(args: argparse.Namespace) -> int:
    """``voice2fa support``: against the shared store the app uses (``VOICE2FA_REDIS_URL``)."""
    import getpass

    settings = Voice2FASettings.from_env(env_file=args.env_file)
    if not settings.redis_url:
        print(
            "voice2fa support: VOICE2FA_REDIS_URL is not set. A MemoryStore lives inside the app's process: "
            "use middleware.support there.",
            file=sys.stderr,
        )
        return 2
    if settings.ephemeral_secret:
        print("voice2fa support: VOICE2FA_SECRET_KEY is not set: the app's store keys cannot be found", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    operator = args.operator or getpass.getuser()

    async def run() -> dict[str, Any]:
        from ._stores.redis import RedisStore

        store = RedisStore(settings.redis_url, timeout=settings.store_timeout)
        try:
            support = Support(settings, store, calls_nobody=not settings.uses_signalwire)
            return await run_action(support, args.action, args.user_id, operator, args.phone)
        finally:
            await store.aclose()

    result = asyncio.run(run())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {json.dumps(value)}")
    return 0

"""Recovery codes: the alternative to the call (NIST SP 800-63B-4, ASVS 5.0 V6) when the phone
is lost, cannot be reached, or the provider is down.

A freshly verified user creates a set of one-time codes (``Voice2FASettings.recovery_codes``,
10 by default); they are shown once, and only their keyed hashes (``Keyring.recovery_macs``,
bound to the user) go to the app's ``RecoveryCodeStore``. A new set replaces the old one.

A recovery code is a second factor like a call's code, and is checked like one: same-site
form, the pending cookie's CSRF token, the same attempt and lockout counting *before* the
comparison (S19: ``Store.reserve_attempt`` on the live challenge, else the user's lockout
bucket with ``Store.take``), and the same proofs (``Cookies.grant``). The store's ``consume``
is true for exactly one caller, so a code works once however many requests race with it.
"""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection

from .._core.crypto import generate_recovery_code, normalize_recovery_code
from .._core.rules import Identity
from .._stores.recovery_codes import RecoveryCodeStore
from .runtime import Runtime

logger = logging.getLogger("voice2fa")

EXAMPLE_CODE = "abcde-23456"


class RecoveryCodes:
    """Creates, counts and consumes a user's recovery codes in the app's store."""

    def __init__(self, ctx: Runtime, store: RecoveryCodeStore) -> None:
        self.ctx = ctx
        self.store = store
        self.count = ctx.settings.recovery_codes

    async def create(self, conn: HTTPConnection, user_id: str) -> list[str]:
        """A new set of codes, saved as hashes (the old set ends); the plain codes, to show once."""
        codes = [generate_recovery_code() for _ in range(self.count)]
        keys = self.ctx.keys
        hashes = [keys.recovery_macs(user_id, normalize_recovery_code(c) or "")[0] for c in codes]
        await self.ctx.run(self.store.save(user_id, hashes))
        await self.ctx.audit("recovery_created", conn, user_id, codes=len(codes))
        return codes

    async def remaining(self, user_id: str) -> int:
        return int(await self.ctx.run(self.store.remaining(user_id)))

    async def consume(self, user_id: str, typed: str) -> bool:
        """Use a typed code: ``True`` once for a good unused code of this user. A code that is
        not even well-formed never reaches the store."""
        code = normalize_recovery_code(typed)
        if code is None:
            return False
        for code_hash in self.ctx.keys.recovery_macs(user_id, code):
            if await self.ctx.run(self.store.consume(user_id, code_hash)):
                return True
        return False


def freshly_verified(ctx: Runtime, conn: HTTPConnection, identity: Identity) -> bool:
    """The step-up rule of the pages that change how a user signs in (the phone page, the
    recovery codes page): a proof no older than ``enrol_fresh_within``."""
    at = ctx.cookies.verified_at(conn.cookies, conn.scope, identity)
    return at is not None and ctx.now() - at <= ctx.settings.enrol_fresh_within

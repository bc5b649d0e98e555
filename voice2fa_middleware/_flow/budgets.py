"""Every budget, in one place: its store key, its window, its limit setting and its name.

A budget is a fixed-window counter in the store (a ``Bucket``). Its ``name`` is the one
spelling used in audit events (``budget_exhausted``'s ``budget``), metrics
(``voice2fa.budget.exhausted``'s ``voice2fa.budget``), log lines and the docs:

========================  ==========================================  ==============================
name                      counts                                      limit (setting), window
========================  ==========================================  ==============================
``all``                   calls to numbers nobody verified before     ``calls_per_hour``, 1 h
``all_known``             calls to numbers their user verified        ``calls_per_hour``, 1 h
``phone``                 calls to one number, by users who never     ``calls_per_phone_per_hour``, 1 h
                          verified it
``known_phone``           one user's calls to a number they verified  ``calls_per_phone_per_hour``, 1 h
``user``                  one user's calls                            ``calls_per_user_per_hour``, 1 h
``client``                calls asked from one client network         ``calls_per_client_per_hour``, 1 h
``enrol_phone``           enrolment calls to one number               ``enrol_calls_per_phone_per_hour``
``enrol_user``            one user's enrolment calls                  ``enrol_calls_per_user_per_hour``
``enrol_client``          enrolment calls from one client network     ``enrol_calls_per_client_per_hour``
``lockout``               one user's wrong codes                      ``lockout_failures``,
                                                                      ``lockout_window``
``reported``              calls the user reported ("press 9": not     1, ``reported_pause``
                          me): while it counts one, no call to them
========================  ==========================================  ==============================

Numbers with an extension are counted by their line (``+12025550100``, whatever the
extension): the budgets bound what calls cost, and a call costs what its line costs.

Shared budgets (``SHARED``: ``all``, ``all_known``, ``phone``, ``enrol_phone``) are spent by
many users together: when one is spent, a warning is logged, for an operator to look.

The rule every path follows (S26): a budget is spent only by a call the provider accepted.
A call is charged before it is placed (so that concurrent requests cannot overrun a
budget), and the charge is given back (``Store.refund``) when the provider was paused,
refused the call or failed before it could exist. A call that may exist (a timeout after
the request left) keeps its charge.

The keys are those of earlier releases, so counters survive an upgrade; they carry Redis
Cluster hash tags (see ``user_key`` and ``own_slot``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from .._core.crypto import Keyring
from .._settings import Voice2FASettings
from .._stores.base import Bucket, own_slot, user_key
from .._telephony.numbers import line_of

SHARED = frozenset({"all", "all_known", "phone", "enrol_phone"})
HOUR = 3600
# The console caller calls no one, so its calls cost nothing: its hourly budgets are this
# many times the configured ones, so that trying the demo again and again works.
DEV_BUDGET_SCALE = 100
# A day: the window in which accounts confirming one number are counted.
SHARED_PHONE_WINDOW = 86400


@functools.lru_cache(maxsize=4096)
def client_group(address: str) -> str:
    """What a per-client budget counts: an IPv4 address, or an IPv6 client's /64 (one
    customer's allocation, inside which addresses are free to rotate). Parsed once per
    address among the last 4,096 seen (bounded: clients choose their addresses)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class CallBudgets:
    """What one call is charged to: ``known`` when the counter ``known_key`` says the user
    verified this phone before, else ``new`` (``Store.start`` chooses, atomically)."""

    known_key: str
    known: Sequence[Bucket]
    new: Sequence[Bucket]


class Budgets:
    """Builds every budget's ``Bucket`` from the settings, keys and client address."""

    def __init__(self, settings: Voice2FASettings, keys: Keyring, *, calls_nobody: bool) -> None:
        self.settings = settings
        self.keys = keys
        self.scale = DEV_BUDGET_SCALE if calls_nobody else 1

    def lockout(self, user_tag: str) -> Bucket:
        """The user's failure counter (S4)."""
        s = self.settings
        return Bucket("fail:" + user_key(user_tag), s.lockout_failures, s.lockout_window, "lockout")

    def reported(self, user_tag: str) -> Bucket:
        """The pause after the user pressed 9 in a call ("I did not try to sign in"): while it
        counts a hit, no call is placed to them, so an attacker who holds the password cannot
        keep the phone ringing. Checked before any budget is charged."""
        return Bucket("reported:" + user_key(user_tag), 1, self.settings.reported_pause, "reported")

    @staticmethod
    def reported_call_key(user_tag: str, challenge_id: str) -> str:
        """The mark that a challenge ended because its call was reported: the verify page's
        status (the challenge itself is deleted) reads it to say what happened."""
        return f"reported:{user_key(user_tag)}:{challenge_id}"

    def known_phone_key(self, user_tag: str, e164: str) -> str:
        """The counter that says this user verified this phone (renewed by each verification)."""
        return f"known:{user_key(user_tag)}:{self.keys.tag('phone', line_of(e164))}"

    def verification(self, user_tag: str, e164: str, client: str) -> CallBudgets:
        """The budgets a verification call is charged to (S8, S21).

        A user who verified this phone before is charged to budgets of their own: accounts
        that never proved they hold the phone (an attacker's, registered with the victim's
        number) spend the phone's shared budget and the deployment's "new" budget, and cannot
        starve the phone's owner. Trade-off: first-time users can still be kept waiting by a
        flood of new accounts, until the deployment's "new" budget resets.
        """
        s, x = self.settings, self.scale
        user, phone_tag = user_key(user_tag), self.keys.tag("phone", line_of(e164))
        client_bucket = self._client("calls:client:", client, s.calls_per_client_per_hour, "client")
        own = Bucket("calls:user:" + user, s.calls_per_user_per_hour * x, HOUR, "user")
        known = [
            Bucket("calls:all:known", s.calls_per_hour * x, HOUR, "all_known"),
            Bucket(f"calls:known:{user}:{phone_tag}", s.calls_per_phone_per_hour * x, HOUR, "known_phone"),
            own,
            client_bucket,
        ]
        new = [
            Bucket("calls:all", s.calls_per_hour * x, HOUR, "all"),
            Bucket("calls:phone:" + own_slot(phone_tag), s.calls_per_phone_per_hour * x, HOUR, "phone"),
            own,
            client_bucket,
        ]
        return CallBudgets(self.known_phone_key(user_tag, e164), known, new)

    def enrolment(self, user_tag: str, e164: str, client: str) -> CallBudgets:
        """The budgets an enrolment call is charged to: the deployment's and the number's
        shared ones (as any call to a number nobody verified), and the enrolment budgets of
        the number, the user and the client network: stricter, since enrolment calls go to
        numbers the user chose (the toll-fraud front door)."""
        s, x = self.settings, self.scale
        phone = own_slot(self.keys.tag("phone", line_of(e164)))
        buckets = [
            Bucket("calls:all", s.calls_per_hour * x, HOUR, "all"),
            Bucket("calls:phone:" + phone, s.calls_per_phone_per_hour * x, HOUR, "phone"),
            Bucket("enrol:phone:" + phone, s.enrol_calls_per_phone_per_hour * x, HOUR, "enrol_phone"),
            Bucket("enrol:user:" + user_key(user_tag), s.enrol_calls_per_user_per_hour * x, HOUR, "enrol_user"),
            self._client("enrol:client:", client, s.enrol_calls_per_client_per_hour, "enrol_client"),
        ]
        # known_key names a counter nobody writes: the enrolment budgets apply either way.
        return CallBudgets("enrol:none:" + user_key(user_tag), buckets, buckets)

    def _client(self, prefix: str, client: str, limit: int, name: str) -> Bucket:
        tag = self.keys.tag("client", client_group(client))
        return Bucket(prefix + own_slot(tag), limit * self.scale, HOUR, name)

    def enrolled(self, user_tag: str, e164: str) -> tuple[str, str]:
        """The counters of accounts that confirmed a number within a day: this user's
        first confirmation of it, and the number's accounts."""
        phone_tag = own_slot(self.keys.tag("phone", line_of(e164)))
        return f"enrolled:{user_key(user_tag)}:{phone_tag}", "enrolled:phone:" + phone_tag


"""The event loop never blocks: unrelated requests complete while Create Call is pending."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from voice2fa_middleware.testing import SignalWireDouble

from .conftest import PHONES, Harness


def test_unrelated_requests_complete_while_calls_are_pending(harness_factory: Callable[..., Harness]) -> None:
    double = SignalWireDouble(create_delay=4).start()  # a provider slow to answer Create Call
    h = harness_factory(double=double, call_timeout=10, calls_per_client_per_hour=100)
    users = ["alice", "bob", "carol"]
    statuses: list[int] = []

    def challenge(user: str) -> None:
        with h.client(user) as c:
            statuses.append(c.get("/account").status_code)

    threads = [threading.Thread(target=challenge, args=(u,)) for u in users]
    for t in threads:
        t.start()
    # Wait (without a timing threshold) until every Create Call has reached the provider.
    with httpx.Client(base_url=h.url, timeout=30) as other:
        while len(double.create_requests) < len(users):
            other.get("/")
        for _ in range(20):
            r = other.get("/")
            assert r.status_code == 200 and r.text == "public page"
        # Those requests were answered while every call was still pending at the provider.
        assert double.calls == [] and all(t.is_alive() for t in threads)
        assert statuses == []
    for t in threads:
        t.join()
    assert statuses == [303, 303, 303]
    assert {dict(r)["To"] for r in double.create_requests} == {PHONES[u] for u in users}

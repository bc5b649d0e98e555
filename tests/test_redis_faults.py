"""Redis taken down mid-flow: fail closed (503), then recover without restarting the app."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voice2fa_middleware import RedisStore

from .conftest import Harness, RedisServer, submit_concurrently

pytestmark = pytest.mark.redis


def test_redis_stopped_mid_flow_fails_closed_and_recovers(
    harness_factory: Callable[..., Harness], redis_server: RedisServer
) -> None:
    own = RedisServer(redis_server.binary)  # a server of our own, to stop and start
    own.start()
    try:
        h = harness_factory(store=RedisStore(own.url, timeout=0.5), store_timeout=1.0)
        with h.client() as c:
            csrf, code = h.challenge(c)
            own.stop()
            r = h.verify(c, code, csrf)
            assert r.status_code == 503 and "unavailable" in r.text
            page = c.get("/voice2fa/verify?next=/account")
            assert page.status_code == 503 and "unavailable" in page.text
            with h.client("bob") as bob:
                protected = bob.get("/account")
                assert protected.status_code == 503 and "secret page" not in protected.text
            own.start()  # persistence is off: the pending challenge is gone
            lost = h.verify(c, code, csrf)
            assert lost.status_code == 400
            c.cookies.delete("voice2fa_pending")
            csrf, code = h.challenge(c)  # a new flow works without restarting the app
            assert h.verify(c, code, csrf).status_code == 303
            assert c.get("/account").status_code == 200
    finally:
        own.stop()


def test_fifty_concurrent_correct_submissions_one_success_on_redis(
    harness_factory: Callable[..., Harness], redis_server: RedisServer
) -> None:
    h = harness_factory(store="redis")
    with h.client() as c:
        csrf, code = h.challenge(c)
        cookies = dict(c.cookies)
    results = submit_concurrently(h.url, cookies, {"code": code, "csrf_token": csrf}, 50)
    assert results.count(303) == 1 and len(results) == 50

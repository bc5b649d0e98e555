"""The JSON API, shape by shape, as docs/reference/json-api.md documents it (a real server and the double)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from .conftest import Harness, wrong_for

JSON = {"accept": "application/json"}


def _ask(h: Harness, c: httpx.Client) -> dict[str, Any]:
    r = c.get("/account", headers=JSON)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Voice2FA realm="voice2fa"'
    body = r.json()
    urls = {"verify_url", "status_url", "resend_url", "cancel_url"}
    assert set(body) == {"error", *urls, "csrf_token", "challenge_token"}
    assert body["error"] == "voice2fa_required"
    assert body["verify_url"].startswith("/voice2fa/verify?next=")
    assert (body["status_url"], body["resend_url"], body["cancel_url"]) == (
        "/voice2fa/verify/status",
        "/voice2fa/resend",
        "/voice2fa/cancel",
    )
    assert any(cookie.name == "voice2fa_pending" for cookie in c.cookies.jar)
    return body  # type: ignore[no-any-return]


def test_verify_status_and_errors(harness: Harness) -> None:
    with harness.client() as c:
        asked = _ask(harness, c)
        code = harness.double.wait_for_code()
        status = c.get(asked["status_url"], headers=JSON)
        assert status.status_code == 200
        body = status.json()
        assert set(body) == {"call_status", "attempts_left", "resend_in", "calls_left", "expires_in"}
        assert body["call_status"] == "completed" and body["attempts_left"] == 5 and body["calls_left"] == 2
        assert 0 < body["expires_in"] <= 300 and 0 < body["resend_in"] <= 30
        wrong = c.post(asked["verify_url"], json={"code": wrong_for(code), "csrf_token": asked["csrf_token"]})
        assert wrong.status_code == 400
        assert set(wrong.json()) == {"error", "message", "attempts_left"}
        assert wrong.json()["error"] == "invalid_code" and wrong.json()["attempts_left"] == 4
        forged = c.post(asked["verify_url"], json={"code": code, "csrf_token": "not-it"})
        assert forged.status_code == 403 and set(forged.json()) == {"error", "message"}
        assert forged.json()["error"] == "csrf"
        early = c.post(asked["resend_url"], json={"csrf_token": asked["csrf_token"]})
        assert early.status_code == 429 and early.json()["error"] == "rate_limited"
        assert int(early.headers["retry-after"]) == early.json()["retry_after"] > 0
        ok = c.post(asked["verify_url"], json={"code": code, "csrf_token": asked["csrf_token"], "remember": True})
        assert ok.status_code == 200 and ok.json() == {"verified": True, "next": "/account"}
        assert {cookie.name for cookie in c.cookies.jar} >= {"voice2fa_verified", "voice2fa_remember"}
        gone = c.get(asked["status_url"], headers=JSON)
        assert gone.status_code == 404 and gone.json() == {"error": "no_challenge"}
        assert c.get("/account", headers=JSON).status_code == 200


def test_resend_and_cancel(harness: Harness) -> None:
    with harness.client() as c:
        asked = _ask(harness, c)
        harness.double.wait_for_code()
        harness.clock.offset += 31
        again = c.post(asked["resend_url"], headers={"x-csrf-token": asked["csrf_token"], **JSON})
        assert again.status_code == 202 and again.json() == {"status": "calling"}
        harness.double.wait_for_calls(2)
        cancel = c.post(asked["cancel_url"], json={"csrf_token": asked["csrf_token"]})
        assert cancel.status_code == 200 and cancel.json() == {"canceled": True}
        assert not any(cookie.name == "voice2fa_pending" for cookie in c.cookies.jar)


def test_other_documented_errors(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(max_body_size=1024)
    with h.client() as c:
        asked = _ask(h, c)
        big = c.post(
            asked["verify_url"], content=b"{" + b" " * 2000 + b"}", headers={"content-type": "application/json"}
        )
        assert big.status_code == 413 and big.json()["error"] == "too_large"
        odd = c.post(asked["verify_url"], content=b"x", headers={"content-type": "text/plain", **JSON})
        assert odd.status_code == 415 and odd.json()["error"] == "bad_request"
    with h.client("premium") as c:
        refused = c.get("/account", headers=JSON)
        assert refused.status_code == 403 and refused.json()["error"] == "phone"

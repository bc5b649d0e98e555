"""S17: random paths, methods, forms, headers, cookies and bodies at every endpoint of the
middleware: never a 500, never the protected page without a verified cookie."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice2fa_middleware import MemoryStore, Voice2FASettings

from .conftest import PHONES, SECRET, RecordingCaller, build_app, csrf_of, identify

ENDPOINTS = [
    "/voice2fa",
    "/voice2fa/",
    "/voice2fa/verify",
    "/voice2fa/verify/status",
    "/voice2fa/resend",
    "/voice2fa/cancel",
    "/voice2fa/laml/x",
    "/voice2fa/laml/x/code",
    "/voice2fa/laml/x/repeat",
    "/voice2fa/status/x",
    "/voice2fa/dev/phone",
    "/voice2fa/dev/calls",
    "/voice2fa/static/voice2fa.css",
    "/voice2fa/static/../x",
    "/account",
    "/account/x",
    "/decorated",
    "/pay",
]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
DIGITS = st.sampled_from(["١٢٣٤٥٦", "１２３４５６", "12345６", "123 456", "12-34-56", "000000", "", "1" * 5000, "%00"])
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


class Target:
    def __init__(self, portal: BlockingPortal) -> None:
        self.portal = portal
        self.caller = RecordingCaller()
        self.app = build_app(
            identify=identify,
            protect=["/account", "/pay"],
            settings=Voice2FASettings(secret_key=SECRET),
            store=MemoryStore(),
            caller=self.caller,
        )
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")
        first = self.request("GET", "/account", cookies={"test_user": "alice"})
        assert first.status_code == 303
        self.pending = first.cookies.get("voice2fa_pending") or ""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            cookies = kwargs.pop("cookies", {})
            self.client.cookies.clear()
            for k, v in cookies.items():
                self.client.cookies.set(k, v)
            return await self.client.request(method, path, **kwargs)

        return self.portal.call(go)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with start_blocking_portal() as portal:
        t = Target(portal)
        yield t
        portal.call(t.client.aclose)


def check(r: httpx.Response, path: str, signed_in: bool = True) -> None:
    assert r.status_code < 500 or r.status_code in (502, 503), (r.status_code, path, r.text[:300])
    assert r.status_code != 500
    if signed_in:  # anonymous requests pass untouched by design: signing in is the app's job
        assert "secret page" not in r.text and "step-up page" not in r.text
    assert "voice2fa_verified=" not in r.headers.get("set-cookie", "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    path=st.one_of(st.sampled_from(ENDPOINTS), st.builds(lambda a, b: f"/voice2fa/{a}/{b}", TEXT, TEXT)),
    form=st.dictionaries(
        st.sampled_from(["code", "csrf_token", "next", "remember", "Digits", "CallSid", "CallStatus"]) | TEXT,
        TEXT | DIGITS,
        max_size=6,
    ),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "accept",
                "origin",
                "sec-fetch-site",
                "x-signalwire-signature",
                "x-twilio-signature",
                "accept-language",
                "x-forwarded-for",
                "content-type",
                "x-csrf-token",
            ]
        ),
        HEADER_VALUE,
        max_size=5,
    ),
    user=st.sampled_from([None, "alice", "bob", "premium", "bogus", "nobody"]),
    pending=st.sampled_from(["none", "real", "garbage", "tampered"]),
)
def test_s17_random_requests_never_500_nor_bypass(
    target: Target,
    method: str,
    path: str,
    form: dict[str, str],
    headers: dict[str, str],
    user: str | None,
    pending: str,
) -> None:
    cookies: dict[str, str] = {}
    if user:
        cookies["test_user"] = user
    if pending == "real":
        cookies["voice2fa_pending"] = target.pending
    elif pending == "garbage":
        cookies["voice2fa_pending"] = "x.y.z"
    elif pending == "tampered":
        cookies["voice2fa_pending"] = target.pending[:-3] + "abc"
    kwargs: dict[str, Any] = {"headers": headers, "cookies": cookies}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["data"] = form
    try:
        r = target.request(method, path, **kwargs)
    except (httpx.InvalidURL, UnicodeEncodeError):
        return  # the client refused to send it
    check(r, path, signed_in=user in PHONES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=3000),
    ctype=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", ""]
    ),
)
def test_s17_raw_bodies_never_500(target: Target, body: bytes, ctype: str) -> None:
    for path in ("/voice2fa/verify", "/voice2fa/resend", "/voice2fa/laml/x", "/voice2fa/status/x"):
        r = target.request(
            "POST",
            path,
            content=body,
            headers={"content-type": ctype},
            cookies={"test_user": "alice", "voice2fa_pending": target.pending},
        )
        check(r, path)


@pytest.mark.parametrize("payload", ['{"code": [[[[' * 3000 + "]" * 12000 + "}", "[1,2]", '"x"', "{", "null"])
def test_s17_hostile_json_is_a_400(target: Target, payload: str) -> None:
    r = target.request(
        "POST",
        "/voice2fa/verify",
        content=payload.encode(),
        headers={"content-type": "application/json"},
        cookies={"test_user": "alice", "voice2fa_pending": target.pending},
    )
    assert r.status_code in (400, 403, 413)


def test_s17_oversized_bodies_are_capped(target: Target) -> None:
    big = b"code=" + b"1" * 100_000
    for path in ("/voice2fa/verify", "/voice2fa/laml/x"):
        r = target.request(
            "POST",
            path,
            content=big,
            headers={"content-type": "application/x-www-form-urlencoded"},
            cookies={"test_user": "alice", "voice2fa_pending": target.pending},
        )
        assert r.status_code == 413


def test_s17_non_ascii_digits_are_not_codes(target: Target) -> None:
    page = target.request("GET", "/voice2fa/verify", cookies={"test_user": "alice", "voice2fa_pending": target.pending})
    r = target.request(
        "POST",
        "/voice2fa/verify",
        data={"code": "١٢٣٤٥٦", "csrf_token": csrf_of(page.text)},
        cookies={"test_user": "alice", "voice2fa_pending": target.pending},
    )
    assert r.status_code == 400


# -- round two: long and odd next values, many pending cookies (S20, S21) --------------------------------

ODD_QUERY = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=9000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=ODD_QUERY, tail=st.sampled_from(["", "/x", "/" + "p" * 3000, "//evil.example", "/%0A", "/\\x"]))
def test_s20_any_url_keeps_cookies_small_and_places_no_second_call(target: Target, query: str, tail: str) -> None:
    before = len(target.caller.calls)
    try:
        r = target.request("GET", "/account" + tail, params={"q": query}, cookies={"test_user": "alice"})
    except (httpx.InvalidURL, UnicodeEncodeError):
        return
    check(r, "/account" + tail)
    for value in r.headers.get_list("set-cookie"):
        assert len(value) < 2048, value[:100]
    assert len(r.headers.get("location", "")) <= 4096
    assert len(target.caller.calls) == before  # alice's live challenge is reused: no second call


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.sampled_from(["real", "garbage", "tampered", "empty", "long"]), min_size=2, max_size=8))
def test_s21_many_pending_cookies_never_500_nor_bypass(target: Target, values: list[str]) -> None:
    spelled = {
        "real": target.pending,
        "garbage": "x.y.z",
        "tampered": target.pending[:-3] + "abc",
        "empty": "",
        "long": "a" * 5000,
    }
    header = "; ".join(["test_user=alice", *(f"voice2fa_pending={spelled[v]}" for v in values)])
    for path in ("/account", "/voice2fa/verify", "/voice2fa/verify/status"):
        r = target.request("GET", path, headers={"cookie": header})
        check(r, path)
    r = target.request("POST", "/voice2fa/verify", data={"code": "000000"}, headers={"cookie": header})
    check(r, "/voice2fa/verify")

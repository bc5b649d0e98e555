"""Units: settings, LaML, languages, path rules, signatures, the HTTP client, public API."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.websockets import WebSocket

import voice2fa_middleware
from voice2fa_middleware import (
    CallError,
    ConfigurationError,
    Identity,
    ProtectedPath,
    SignalWireCaller,
    Voice2FAMiddleware,
    Voice2FASettings,
    compute_signature,
    is_valid_signature,
    safe_next,
)
from voice2fa_middleware._core.crypto import Keyring
from voice2fa_middleware._core.rules import PathRules
from voice2fa_middleware._i18n.catalogs import negotiate
from voice2fa_middleware._telephony.laml import LamlBuilder
from voice2fa_middleware._telephony.numbers import check_phone, mask
from voice2fa_middleware._web import connection as _http
from voice2fa_middleware._web.connection import Connection

from .conftest import SECRET


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(voice2fa_middleware.__all__) == sorted(
        [
            "AuditEvent",
            "AuditHook",
            "Bucket",
            "CallError",
            "Caller",
            "Challenge",
            "ConfigurationError",
            "ConsoleCaller",
            "Identity",
            "MemoryRecoveryCodes",
            "MemoryStore",
            "MissingExtraError",
            "NOTIFICATIONS",
            "NotifyHook",
            "PhoneConfirmed",
            "RecoveryCodeStore",
            "Support",
            "UserState",
            "ProtectedPath",
            "ProviderUnavailableError",
            "RedisStore",
            "Reservation",
            "SignalWireCaller",
            "SignalWireSDKCaller",
            "Start",
            "Store",
            "StoreError",
            "StoreFullError",
            "Translations",
            "VerificationRequired",
            "Voice2FAError",
            "Voice2FAHandle",
            "Voice2FAMiddleware",
            "Voice2FASettings",
            "VoiceTwoFactor",
            "challenge_id",
            "compute_signature",
            "forget_verification",
            "is_valid_signature",
            "require_voice_2fa",
            "safe_next",
        ]
    )
    for name in voice2fa_middleware.__all__:
        assert getattr(voice2fa_middleware, name) is not None


# -- settings --------------------------------------------------------------------------------


def test_settings_from_env_and_dotenv(tmp_path: pytest.TempPathFactory) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("SIGNALWIRE_SPACE=example.signalwire.com\nSIGNALWIRE_PROJECT=p\nSIGNALWIRE_TOKEN=t\n")
    s = Voice2FASettings.from_env(
        {
            "SIGNALWIRE_NUMBER": "+12025550100",
            "VOICE2FA_PUBLIC_URL": "https://app.example.com",
            "VOICE2FA_SECRET_KEY": SECRET,
        },
        env_file=env_file,
    )
    assert s.uses_signalwire and s.space_url == "https://example.signalwire.com"
    assert s.webhook_key == "t"  # falls back to the API token
    assert s.replace(signing_key="psk").webhook_key == "psk"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"public_url": "http://app.example.com", "secret_key": SECRET}, "http://"),
        ({"public_url": "https://app.example.com"}, "VOICE2FA_SECRET_KEY is required"),
        ({"public_url": "https://app.example.com", "secret_key": "short"}, "at least 16"),
        ({"signalwire_space": "x.signalwire.com", "signalwire_project": "p"}, "go together"),
        (
            {
                "signalwire_space": "x.signalwire.com",
                "signalwire_project": "p",
                "signalwire_token": "t",
                "from_number": "+12025550100",
                "secret_key": SECRET,
            },
            "VOICE2FA_PUBLIC_URL is required",
        ),
        ({"code_ttl": 3600}, "code_ttl"),
        ({"code_digits": 4}, "code_digits"),
        ({"lockout_failures": 100}, "lockout_failures"),
        ({"calls_per_hour": 0}, "calls_per_hour"),
        ({"logout_url": "/\\evil.example"}, "logout_url"),
        ({"logout_url": "https://evil.example/logout"}, "logout_url"),
    ],
)
def test_unsafe_settings_fail_at_start_up_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Voice2FASettings(**kwargs)  # type: ignore[arg-type]


def test_loopback_test_double_is_accepted_over_http() -> None:
    s = Voice2FASettings(
        signalwire_space="http://127.0.0.1:8099",
        signalwire_project="p",
        signalwire_token="t",
        from_number="+12025550100",
        public_url="http://127.0.0.1:8000",
    )
    assert s.is_local and s.space_url == "http://127.0.0.1:8099"


def test_secret_keys_rotate_newest_first() -> None:
    s = Voice2FASettings(secret_key="new-key-0123456789abcdef, old-key-0123456789abcdef")
    assert s.secret_keys == ("new-key-0123456789abcdef", "old-key-0123456789abcdef")
    assert Voice2FASettings(secret_key=",").ephemeral_secret


# -- LaML and languages ------------------------------------------------------------------------


def says(document: str) -> list[str]:
    return [e.text or "" for e in ET.fromstring(document).iter("Say")]


def test_laml_speaks_digits_one_by_one_twice_with_zeros() -> None:
    doc = LamlBuilder(voice="woman", app_name="Acme").code(code="007012", action="https://a/x", language="en")
    root = ET.fromstring(doc)
    assert root.tag == "Response"
    texts = says(doc)
    assert sum("0, 0, 7, 0, 1, 2" in t for t in texts) == 2
    assert any("Press 1" in t for t in texts)
    assert [e.tag for e in root][-1] == "Hangup"
    gather = root.find("Gather")
    assert gather is not None and gather.get("action") == "https://a/x" and gather.get("numDigits") == "1"
    assert all(e.get("voice") == "woman" and e.get("language") == "en-US" for e in root.iter("Say"))


def test_laml_answer_asks_for_a_key_before_any_code() -> None:
    doc = LamlBuilder(voice=None, app_name="Acme").answer(action="https://a/code", language="de")
    root = ET.fromstring(doc)
    gather = root.find("Gather")
    assert gather is not None and "Acme" in says(doc)[0] and "Taste" in says(doc)[0]
    assert all(e.get("language") == "de-DE" and e.get("voice") is None for e in root.iter("Say"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        ("es", "es"),
        ("de-DE", "de"),
        ("ja,zh;q=0.5", "ja"),
        ("sv,da;q=0.5", "en"),
        ("", "en"),
        ("en;q=0.1,de;q=0.9", "de"),
        ("garbage;;;q=x,", "en"),
    ],
)
def test_language_negotiation_falls_back_to_english(header: str, expected: str) -> None:
    assert negotiate(header) == expected


# -- phones, paths, redirects ------------------------------------------------------------------


def test_phone_checks() -> None:
    assert check_phone("+1 (202) 555-0143", {"US"}).e164 == "+12025550143"
    assert check_phone("+19005551234", {"US"}).reason == "number_type"
    assert check_phone("+33612345678", {"US"}).reason == "country"
    assert check_phone("+1555123", {"US"}).reason == "invalid"
    assert check_phone(None, None).reason == "invalid"
    assert mask("+12025550143") == "•••• 0143"


def test_path_rules() -> None:
    rules = PathRules(["/account", ProtectedPath("/pay", fresh_within=60), "/admin/*/edit"])
    assert rules.match("/account") is not None and rules.match("/account/x") is not None
    assert rules.match("/account/a\nb") is not None
    assert rules.match("/accounts") is None and rules.match("/") is None
    pay = rules.match("/pay/now")
    assert pay is not None and pay.fresh_within == 60
    assert rules.match("/admin/7/edit") is not None and rules.match("/admin/7/view") is None
    with pytest.raises(ValueError, match="start with"):
        PathRules(["account"])


@pytest.mark.parametrize(
    "value", ["//evil", "/\\evil", "https://evil", "javascript:alert(1)", "/a\tb", "", None, 5, "evil"]
)
def test_safe_next_refuses(value: object) -> None:
    assert safe_next(value) is None


def test_safe_next_keeps_local_paths() -> None:
    assert safe_next("/account?tab=2#x") == "/account?tab=2#x"


# -- signatures --------------------------------------------------------------------------------


def test_signature_known_vector() -> None:
    # Computed once with the official SDK (signalwire 2.1.1 RequestValidator); the oracle test re-checks it live.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_signature_accepts_url_with_or_without_default_port() -> None:
    url = "https://app.example.com/voice2fa/laml/t"
    sig = compute_signature("k", "https://app.example.com:443/voice2fa/laml/t", {"A": "1"})
    assert is_valid_signature("k", url, [("A", "1")], "A=1", sig)
    assert not is_valid_signature("k", url, [("A", "2")], "A=2", sig)
    assert not is_valid_signature("k", url, [("A", "1")], "A=1", None)
    assert not is_valid_signature("k", "http://bad:port/x", [("A", "1")], "A=1", sig)


# -- the SignalWire HTTP client (respx: unit tests of the client only) ---------------------------


CALLS = "https://example.signalwire.com/api/laml/2010-04-01/Accounts/proj/Calls.json"


@pytest.mark.anyio
@respx.mock
async def test_signalwire_caller_sends_the_create_call_form() -> None:
    route = respx.post(CALLS).mock(return_value=httpx.Response(201, json={"sid": "abc-123", "status": "queued"}))
    caller = SignalWireCaller(space="example.signalwire.com", project="proj", token="tok")
    sid = await caller.place_call(
        to="+12025550143", from_="+12025550100", laml_url="https://a/l", status_url="https://a/s"
    )
    assert sid == "abc-123"
    request = route.calls.last.request
    assert request.headers["authorization"] == "Basic " + __import__("base64").b64encode(b"proj:tok").decode()
    form = httpx.QueryParams(request.content.decode())
    assert form["To"] == "+12025550143" and form["From"] == "+12025550100" and form["Url"] == "https://a/l"
    assert form["Method"] == "POST" and form["StatusCallback"] == "https://a/s"
    assert form.get_list("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    await caller.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "message", "code"),
    [
        (
            httpx.Response(400, json={"code": "21211", "message": "Invalid 'To'", "status": 400}),
            "Invalid 'To'",
            "21211",
        ),
        (httpx.Response(422, json={"errors": [{"code": "X1", "detail": "Nope"}]}), "Nope", "X1"),
        (httpx.Response(500, text="oops"), "HTTP 500", None),
        (httpx.Response(200, json={"status": "queued"}), "no call sid", None),
    ],
)
@respx.mock
async def test_signalwire_caller_errors(response: httpx.Response, message: str, code: str | None) -> None:
    respx.post(CALLS).mock(return_value=response)
    caller = SignalWireCaller(space="example.signalwire.com", project="proj", token="tok")
    with pytest.raises(CallError, match=message) as info:
        await caller.place_call(to="+1", from_="+1", laml_url="https://a/l", status_url="https://a/s")
    assert info.value.code == code
    await caller.aclose()


@pytest.mark.anyio
@respx.mock
async def test_signalwire_caller_timeout_is_a_call_error() -> None:
    respx.post(CALLS).mock(side_effect=httpx.ConnectTimeout("slow"))
    caller = SignalWireCaller(space="example.signalwire.com", project="proj", token="tok")
    with pytest.raises(CallError, match="in time"):
        await caller.place_call(to="+1", from_="+1", laml_url="https://a/l", status_url="https://a/s")
    await caller.aclose()


# -- in-process: websockets, root_path -----------------------------------------------------------


def _app() -> Starlette:
    """/account/{item} and a WebSocket at /ws/secret, both protected, behind the middleware."""

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("SECRET")
        await websocket.close()

    return _wrapped([Route("/account/{item}", _page("SECRET")), WebSocketRoute("/ws/secret", ws)], ["/account", "/ws"])


class _NoCaller:
    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        return "CA-none"


async def _alice(conn: object) -> tuple[str, str]:
    return ("alice", "+12025550143")


def _page(text: str) -> Callable[[object], Awaitable[PlainTextResponse]]:
    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse(text)

    return page


def _wrapped(
    routes: list[BaseRoute], protect: list[str | ProtectedPath], identify: Any = _alice, **settings: Any
) -> Starlette:
    """A Starlette app behind the middleware, with a caller that places no call."""
    app = Starlette(routes=routes)
    app.add_middleware(
        Voice2FAMiddleware,
        identify=identify,
        protect=protect,
        caller=_NoCaller(),
        settings=Voice2FASettings(secret_key=SECRET, **settings),
    )
    return app


def _client(app: Starlette, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _asgi_websocket(app: Starlette, path: str) -> list[dict[str, object]]:
    sent: list[dict[str, object]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, object]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "ws",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5),
        "subprotocols": [],
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


@pytest.mark.anyio
async def test_unverified_websocket_is_closed_with_policy_violation() -> None:
    sent = await _asgi_websocket(_app(), "/ws/secret")
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


@pytest.mark.anyio
async def test_newline_in_path_parameter_is_still_protected() -> None:
    async with _client(_app()) as client:
        r = await client.get("/account/a%0Ab")
        assert r.status_code == 303 and "SECRET" not in r.text


@pytest.mark.anyio
async def test_root_path_is_stripped_before_matching() -> None:
    async with _client(_app(), root_path="/api") as client:
        r = await client.get("/api/account/x")
        assert r.status_code == 303 and "SECRET" not in r.text


def test_tokens_with_foreign_characters_are_refused() -> None:
    keys = Keyring([SECRET])
    token = keys.pending.dumps({"b": "x"})
    assert keys.load(keys.pending, token, 60) == {"b": "x"}
    payload, stamp, sig = token.split(".")
    # base64 decoding would skip these characters: one valid token, endless spellings.
    assert keys.load(keys.pending, f"{payload}.{stamp}.{sig[:5]}!!!{sig[5:]}", 60) is None
    alice = ("alice", "+12025550143", "")
    proof = keys.sign_proof("verified", alice)
    version, stamp, sig = proof.split(".")
    assert keys.proof_time("verified", alice, proof, 60) is not None
    assert keys.proof_time("verified", alice, f"{version}.{stamp}.{sig}=", 60) is None
    assert keys.proof_time("verified", alice, f"{version}.{stamp}.{sig[:5]}!{sig[6:]}", 60) is None


def test_proofs_are_short_and_bound_to_kind_fields_keys_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = ("alice", "+12025550143", "")
    old, new = Keyring(["old-" + SECRET]), Keyring(["new-" + SECRET, "old-" + SECRET])
    proof = old.sign_proof("verified", alice)
    # Nothing but a time and a signature travels with every request.
    assert len(proof) <= 40 and "alice" not in proof
    assert abs(old.proof_time("verified", alice, proof, 60) - time.time()) < 2  # type: ignore[operator]
    assert new.proof_time("verified", alice, proof, 60) is not None  # the old key still verifies
    assert Keyring(["new-" + SECRET]).proof_time("verified", alice, proof, 60) is None  # until removed
    assert old.proof_time("remember", alice, proof, 60) is None  # another kind of proof
    assert old.proof_time("verified", ("alice", "+12025550144", ""), proof, 60) is None  # another phone
    assert old.proof_time("verified", ("alice", "+12025550143", "2"), proof, 60) is None  # revoked
    # Fields are kept apart: no user id can borrow another's proof by moving a separator.
    split = old.sign_proof("verified", ("a\x00b", "c", ""))
    assert old.proof_time("verified", ("a", "b\x00c", ""), split, 60) is None
    assert old.proof_time("verified", ("a\x00b", "c", ""), split, 60) is not None
    assert old.proof_time("verified", ("\udc80", "+1", ""), old.sign_proof("verified", ("\udc80", "+1", "")), 60)
    # One spelling per token: base64 would ignore the 2 spare bits of the signature's last
    # character, so every other last character is refused (caches are keyed by the token).
    version, stamp, sig = proof.split(".")
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelt = [f"{version}.{stamp}.{sig[:-1]}{c}" for c in digits if c != sig[-1]]
    assert [t for t in respelt if old.proof_time("verified", alice, t, 60) is not None] == []
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 30)
    from_the_future = old.sign_proof("verified", alice)
    monkeypatch.setattr(time, "time", lambda: now)
    assert old.proof_time("verified", alice, from_the_future, 3600) is None
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert old.proof_time("verified", alice, proof, 60) is None  # expired
    assert old.proof_time("verified", alice, proof, 120) is not None


@pytest.mark.anyio
async def test_sign_out_is_never_challenged_even_under_a_catch_all_pattern() -> None:
    page = _page("page")
    app = _wrapped([Route("/logout", page, methods=["POST"]), Route("/account", page)], ["/*"], logout_url="/logout")
    async with _client(app) as client:
        assert (await client.get("/account")).status_code == 303
        assert (await client.post("/logout")).text == "page"


@pytest.mark.anyio
async def test_the_handle_leaves_the_scope_with_the_request() -> None:
    seen: dict[str, object] = {}

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen["during"] = scope.get("voice2fa")
        seen["scope"] = scope
        await PlainTextResponse("ok")(scope, receive, send)  # type: ignore[arg-type]

    async def identify(conn: object) -> None:
        return None

    mw = Voice2FAMiddleware(app, identify=identify, settings=Voice2FASettings(secret_key=SECRET), caller=_NoCaller())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).text == "ok"
    assert seen["during"] is not None
    assert "voice2fa" not in seen["scope"]  # type: ignore[operator]  # no scope <-> handle cycle left


# -- what the hot path was made of: each shortcut gives what the long way gives -------------------

ROUTE_PATHS = st.text(alphabet="/ac\n.%x", max_size=12).map(lambda tail: "/" + tail)


def _starlette_serves(routes: list[BaseRoute], path: str) -> bool:
    scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
    return any(route.matches(scope)[0] == Match.FULL for route in routes)


@given(ROUTE_PATHS)
def test_every_path_starlette_routes_to_a_protected_route_is_protected(path: str) -> None:
    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("page")

    routes: list[BaseRoute] = [Route("/ac", page), Route("/ac/{rest:path}", page), Route("/a/{x}/c", page)]
    plain = PathRules(["/ac", "/a/"])  # the string-operation shortcut
    mixed = PathRules(["/ac", ProtectedPath("/a/*/c", fresh_within=60)])  # the regexes
    assert plain._plain is not None and mixed._plain is None
    if _starlette_serves(routes[:2], path):
        assert plain.match(path) is not None and mixed.match(path) is not None
    if _starlette_serves(routes[2:], path):
        assert plain.match(path) is not None
        rule = mixed.match(path)
        assert rule is not None and rule.fresh_within == 60


@given(ROUTE_PATHS)
def test_plain_prefixes_match_exactly_like_their_regex(path: str) -> None:
    rules = PathRules(["/ac", "/a/c/", ProtectedPath("/x", fresh_within=None)])
    stricter_elsewhere = ProtectedPath("/zz", fresh_within=9)  # "z" is not in ROUTE_PATHS
    regex_only = PathRules(["/ac", "/a/c/", ProtectedPath("/x", fresh_within=None), stricter_elsewhere])
    assert rules._plain is not None and regex_only._plain is None
    assert (rules.match(path) is not None) == (regex_only.match(path) is not None)


@pytest.mark.anyio
async def test_a_final_newline_does_not_unprotect_a_route() -> None:
    # Starlette serves /account%0A from the /account route: "$" matches before a final newline.
    protects: list[list[str | ProtectedPath]] = [["/account"], ["/account", ProtectedPath("/pay", fresh_within=60)]]
    for protect in protects:
        async with _client(_wrapped([Route("/account", _page("SECRET"))], protect)) as client:
            for path in ("/account", "/account%0A", "/account%0a"):
                r = await client.get(path)
                assert r.status_code == 303 and "SECRET" not in r.text, (protect, path)


COOKIE_HEADERS = st.lists(
    st.sampled_from(["user", "voice2fa_verified", "a", "=", ";", " ", '"', "\\", "\\012", "\t", "\xa0", "x=y", ","]),
    max_size=12,
).map("".join)


@given(st.lists(COOKIE_HEADERS, max_size=3))
def test_connection_cookies_are_exactly_starlettes(values: list[str]) -> None:
    headers = [(b"host", b"testserver"), *[(b"cookie", v.encode("latin-1")) for v in values]]
    expected = HTTPConnection({"type": "http", "headers": list(headers)}).cookies
    ours = Connection({"type": "http", "headers": list(headers)}).cookies
    assert ours == expected
    ours["changed"] = "by the app"  # one request's change stays in that request's dict
    assert Connection({"type": "http", "headers": list(headers)}).cookies == expected


def test_connection_is_set_up_as_starlette_sets_up_a_connection() -> None:
    # Connection.__init__ does what HTTPConnection.__init__ does without calling it (it runs on
    # every protected request): this fails if a Starlette release sets up more than the scope.
    scope = {"type": "http", "headers": [(b"cookie", b"a=1"), (b"x-y", b"z")], "path": "/p"}
    theirs, ours = HTTPConnection(scope), Connection(scope)
    assert vars(ours) == vars(theirs) == {"scope": scope}
    assert ours.headers == theirs.headers and ours.cookies == theirs.cookies == {"a": "1"}
    given = Connection(scope, {"b": "2"})
    assert given.cookies == {"b": "2"} and given.cookies is given.cookies
    # Headers as any iterable (ASGI allows it) are read once and kept as a list for the app.
    lazy = {"type": "http", "headers": iter([(b"cookie", b"c=3")])}
    assert Connection(lazy).cookies == {"c": "3"} and lazy["headers"] == [(b"cookie", b"c=3")]


def test_a_bytearray_cookie_header_is_read_and_cached_as_bytes() -> None:
    scope = {"type": "http", "headers": [(b"cookie", bytearray(b"a=1"))]}
    for _ in range(2):  # a miss, then a hit
        assert _http.scope_cookies(scope) == {"a": "1"}
    assert all(type(raw) is bytes for raw in _http._parsed)


async def _asgi_get(app: Starlette, path: str, headers: Any) -> tuple[int, bytes]:
    """One GET through the app with ``headers`` exactly as given (any iterable, per ASGI)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.anyio
async def test_odd_but_valid_asgi_headers_reach_the_same_decision() -> None:
    app = _wrapped([Route("/account", _page("SECRET"))], ["/account"])
    good = f"voice2fa_verified={Keyring([SECRET]).sign_proof('verified', ('alice', '+12025550143', ''))}".encode()
    host = (b"host", b"testserver")
    cases: list[tuple[Any, int]] = [
        ([host, (b"cookie", good)], 200),
        (((b"host", b"testserver"), (b"cookie", good)), 200),  # a tuple
        ((h for h in [host, (b"cookie", good)]), 200),  # a generator: read once, kept for the app
        ([host, (b"cookie", bytearray(good))], 200),
        # Two Cookie headers: read as the installed Starlette reads them for the app (all of
        # them, the later winning, from 0.49 on; before, the first only).
        ([host, (b"cookie", b"a=1"), (b"cookie", good)], 200 if _http._MERGES_HEADERS else 303),
        ([host, (b"cookie", good), (b"cookie", b"voice2fa_verified=bad")], 303 if _http._MERGES_HEADERS else 200),
        ([host, (b"cookie", b"voice2fa_verified=" + good.split(b"=", 1)[1] + b"\xff")], 303),
    ]
    for headers, status in cases:
        got, body = await _asgi_get(app, "/account", headers)
        assert got == status, (headers, got)
        assert (body == b"SECRET") == (status == 200)


def test_the_cookie_cache_is_bounded() -> None:
    for i in range(3 * _http._MAX_ENTRIES):
        Connection({"type": "http", "headers": [(b"cookie", f"n={i}".encode())]}).cookies  # noqa: B018
        assert len(_http._parsed) <= _http._MAX_ENTRIES
    big = b"n=" + b"x" * _http._MAX_HEADER
    assert Connection({"type": "http", "headers": [(b"cookie", big)]}).cookies == {"n": "x" * _http._MAX_HEADER}
    assert big not in _http._parsed


@pytest.mark.anyio
async def test_identities_that_compare_equal_but_bind_differently_never_share_a_proof() -> None:
    phone = "+12025550143"
    who = {
        "a": Identity("alice", phone, 1),  # type: ignore[arg-type]
        "b": Identity("alice", phone, 1.0),  # type: ignore[arg-type]
        "list": Identity("alice", phone, ["v"]),  # type: ignore[arg-type]
    }

    async def identify(conn: HTTPConnection) -> Identity:
        return who[conn.headers["x-who"]]

    app = _wrapped([Route("/account", _page("SECRET"))], ["/account"], identify=identify)
    token_a = Keyring([SECRET]).sign_proof("verified", Identity("alice", phone, "1"))
    token_list = Keyring([SECRET]).sign_proof("verified", Identity("alice", phone, "['v']"))
    async with _client(app) as client:
        as_a = {"x-who": "a", "cookie": f"voice2fa_verified={token_a}"}
        as_b = {"x-who": "b", "cookie": f"voice2fa_verified={token_a}"}
        assert (await client.get("/account", headers=as_a)).text == "SECRET"  # now in the cache
        assert (await client.get("/account", headers=as_b)).status_code == 303  # "1.0" is not "1"
        # An unhashable field is bound by its text, not a 500.
        as_list = {"x-who": "list", "cookie": f"voice2fa_verified={token_list}"}
        assert (await client.get("/account", headers=as_list)).text == "SECRET"

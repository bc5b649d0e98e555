"""Security round three (S27, S31-S34): what a review of the restructured package found, each
with the test that would have caught it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import starlette
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from voice2fa_middleware import Identity, MemoryStore, Voice2FAMiddleware, Voice2FASettings, forget_verification
from voice2fa_middleware._core.crypto import Keyring

from .conftest import SECRET, RecordingCaller, identify

# -- S27 the root path never reaches a cookie or a link as it is -----------------------------------

# What a Set-Cookie of ours may carry, and what a plain same-site cookie path looks like.
_ATTRIBUTES = {"httponly", "max-age", "path", "samesite", "secure", "expires"}
_SAFE_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+=:@%/]*")

_STARLETTE = tuple(int(x) for x in starlette.__version__.split(".")[:2])


def _check_set_cookie(header: str) -> str:
    """Every attribute of ``header`` is one we write, once, and its path is plain; the path."""
    _, *attributes = [part.strip() for part in header.split(";")]
    names = [a.split("=", 1)[0].lower() for a in attributes]
    assert set(names) <= _ATTRIBUTES and len(names) == len(set(names)), header
    path = next(a.split("=", 1)[1] for a in attributes if a.lower().startswith("path="))
    assert _SAFE_PATH.fullmatch(path) and not path.startswith("//"), header
    return path


def _tenant_app(**settings: Any) -> Starlette:
    """A protected app mounted under a path parameter: the URL chooses its root path."""

    async def page(request: Request) -> Response:
        return PlainTextResponse("account")

    inner = Starlette(routes=[Route("/account", page), Route("/logout", page, methods=["POST"])])
    inner.add_middleware(
        Voice2FAMiddleware,
        identify=identify,
        protect=["/account"],
        settings=Voice2FASettings(secret_key=SECRET, **settings),
        store=MemoryStore(),
        caller=RecordingCaller(),
    )
    return Starlette(routes=[Mount("/{tenant}", app=inner)])


@pytest.mark.anyio
async def test_s27_a_root_path_from_the_url_adds_no_cookie_attributes() -> None:
    app = _tenant_app(logout_url="/logout")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", cookies={"test_user": "alice"}) as c:
        r = await c.get("/x;Domain=example.com;Max-Age=99999999/account")
        assert r.status_code == 303, r.text
        headers = r.headers.get_list("set-cookie")
        assert headers and all(_check_set_cookie(h) == "/x%3BDomain=example.com%3BMax-Age=99999999" for h in headers)
        # The sign-out's deletions, under the same root path.
        out = await c.post("/x;Domain=example.com;Max-Age=99999999/logout")
        deleted = out.headers.get_list("set-cookie")
        assert deleted and all(_check_set_cookie(h).startswith("/x%3B") for h in deleted)


def test_s27_every_cookie_of_a_verification_has_a_plain_path() -> None:
    from voice2fa_middleware._web.cookies import Cookies

    settings = Voice2FASettings(secret_key=SECRET)
    cookies = Cookies(settings, Keyring([SECRET]), clock=lambda: 1e9)
    for root in ("/x;Domain=example.com;Max-Age=9", "/\\evil.example", "//evil.example", "/a b\r\nX-Evil: 1"):
        conn = HTTPConnection(
            {"type": "http", "scheme": "https", "root_path": root, "path": root + "/a", "headers": []}
        )
        response = Response()
        cookies.grant(response, conn, ("alice", "+12025550143", ""), remember=True)
        cookies.set(response, conn, "pending", "a value with spaces")
        headers = [v.decode("latin-1") for k, v in response.raw_headers if k == b"set-cookie"]
        headers += [v.decode("latin-1") for _, v in cookies.sign_out_headers(conn.scope)]
        assert len(headers) >= 8
        for header in headers:
            _check_set_cookie(header)
    forgotten = forget_verification(Response(), path="/a;Domain=example.com")
    for _, value in [h for h in forgotten.raw_headers if h[0] == b"set-cookie"]:
        assert _check_set_cookie(value.decode("latin-1")) == "/a%3BDomain=example.com"
    with pytest.raises(Exception, match="cookie_path"):
        Voice2FASettings(secret_key=SECRET, cookie_path="/a;Domain=example.com")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("root", "path"),
    [
        pytest.param(
            "",
            "/%5Cevil.example",  # a Mount under a path parameter: the root path is "/\\evil.example"
            marks=pytest.mark.skipif(
                _STARLETTE < (0, 39),
                reason="Starlette before 0.39 itself fails to route this URL under Mount('/{tenant}') (re.error)",
            ),
        ),
        ("//evil.example", "//evil.example"),  # a proxy's --root-path, or a server that passes "//" on
    ],
)
async def test_s27_links_under_an_odd_root_path_stay_on_this_site(root: str, path: str) -> None:
    app = _tenant_app(logout_url="/logout")
    target = app if not root else app.routes[0].app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=target, root_path=root)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", cookies={"test_user": "alice"}) as c:
        r = await c.post(path + "/voice2fa/verify", headers={"accept": "text/html"}, data={"code": "1"})
        assert r.status_code == 403, r.text
        links = re.findall(r'(?:href|action|src)="([^"]*)"', r.text)
        assert links, r.text
        for link in links:
            if link.startswith("data:"):  # inline (the favicon): goes nowhere
                continue
            assert link.startswith("/") and not link.startswith("//") and "\\" not in link, link
        challenged = await c.get(path + "/account")
        location = challenged.headers["location"]
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location, location


# -- S31 an unsigned webhook opens no span, and joins no trace ----------------------------------


@pytest.mark.anyio
async def test_s31_an_unsigned_webhook_joins_no_trace() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is a test dependency")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from voice2fa_middleware._telephony.signatures import compute_signature

    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    base = "http://127.0.0.1:8000"
    app = Starlette()
    app.add_middleware(
        Voice2FAMiddleware,
        identify=identify,
        settings=Voice2FASettings(secret_key=SECRET, public_url=base, signing_key="signing-key"),
        store=MemoryStore(),
        caller=RecordingCaller(),
        tracer_provider=tracers,
    )
    token = Keyring([SECRET]).call.dumps(["check", "nonce"])
    url = f"{base}/voice2fa/status/{token}"
    form = {"CallSid": "CA1", "CallStatus": "completed"}
    theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as c:
            refused = await c.post(url, data=form, headers={"traceparent": theirs})
            assert refused.status_code == 403
            assert spans.get_finished_spans() == ()  # no span at all, so none in the sender's trace
            signed = {"traceparent": theirs, "x-signalwire-signature": compute_signature("signing-key", url, form)}
            assert (await c.post(url, data=form, headers=signed)).status_code == 204
        [span] = spans.get_finished_spans()  # the provider's own request still joins its trace
        assert span.name == "voice2fa.webhook.status" and span.context.trace_id == int(theirs[3:35], 16)
    finally:
        tracers.shutdown()


# -- S32 user-chosen values cannot forge a line of the text log -----------------------------------


@pytest.mark.anyio
async def test_s32_a_user_id_with_a_newline_forges_no_audit_line(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from voice2fa_middleware import AuditEvent
    from voice2fa_middleware._core.audit import emit

    caplog.set_level(logging.INFO, logger="voice2fa.audit")
    forged = "bob\nverified user=alice client=127.0.0.1"
    client = "10.0.0.1\r\n\x1b[2Kfailed"  # a trusted proxy passes an X-Forwarded-For hop that is no address
    await emit(None, AuditEvent("failed", forged, client, 0.0, {"reason": "wrong\u2028code", "call_sid": "C\\nA"}))
    [record] = [r for r in caplog.records if r.name == "voice2fa.audit"]
    line = logging.Formatter("%(message)s").format(record)
    assert line.isprintable(), line  # one line: no newline, carriage return, escape or separator
    assert "user=bob\\nverified user=alice" in line and "client=10.0.0.1\\r\\n\\x1b[2Kfailed" in line
    assert "reason=wrong\\u2028code" in line and "call_sid=C\\\\nA" in line  # a typed "\n" stays apart
    # The structured fields stay exactly as they were, for JSON formatters.
    assert record.voice2fa_user_id == forged and record.voice2fa_client == client  # type: ignore[attr-defined]


# -- S33 JSON fields are strings, or refused naming the field --------------------------------------


def _json_app(caller: RecordingCaller, phone: str | None) -> Starlette:
    async def who(conn: HTTPConnection) -> Identity:
        return Identity("nina", phone)

    async def saved(user_id: str, e164: str) -> None:
        return None

    async def page(request: Request) -> Response:
        return PlainTextResponse("account")

    app = Starlette(routes=[Route("/account", page)])
    app.add_middleware(
        Voice2FAMiddleware,
        identify=who,
        protect=["/account"],
        settings=Voice2FASettings(secret_key=SECRET, from_number="+12025550100"),
        store=MemoryStore(),
        caller=caller,
        on_phone_confirmed=saved,
    )
    return app


@pytest.mark.anyio
@pytest.mark.parametrize("phone", [12025550123, [12025550123], {"number": "+12025550123"}, True])
async def test_s33_a_phone_that_is_not_a_string_places_no_call(phone: object) -> None:
    caller = RecordingCaller()
    app = _json_app(caller, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        form = await c.get("/voice2fa/phone?next=/account")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        r = await c.post("/voice2fa/phone", json={"phone": phone, "csrf_token": token.group(1)})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "bad_request" and r.json()["field"] == "phone" and r.json()["message"]
    assert caller.calls == []


@pytest.mark.anyio
async def test_s33_verify_fields_that_are_not_strings_are_refused_by_name() -> None:
    caller = RecordingCaller()
    app = _json_app(caller, "+12025550143")
    headers = {"accept": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers) as c:
        asked = (await c.get("/account")).json()
        assert len(caller.calls) == 1
        csrf = asked["csrf_token"]
        for field, value in (("code", 123456), ("csrf_token", [csrf]), ("next", {"to": "/"}), ("remember", 1)):
            body: dict[str, object] = {"code": "000000", "csrf_token": csrf, field: value}
            r = await c.post(asked["verify_url"], json=body)
            assert r.status_code == 400 and r.json()["field"] == field, (field, r.text)
        # null is an absent field, and a checkbox may be a JSON boolean: a wrong code, counted once.
        r = await c.post(
            asked["verify_url"], json={"code": "000000", "csrf_token": csrf, "next": None, "remember": True}
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_code", r.text
        assert r.json()["attempts_left"] == 4  # the refused posts compared nothing


# -- S34 two apps under different prefixes on one host keep their cookies apart ---------------------


@pytest.mark.anyio
async def test_s34_apps_under_different_prefixes_keep_their_cookies_apart() -> None:
    """Two middlewares on one host, ``/a/voice2fa`` and ``/b/voice2fa``, no root path, their own
    secrets: a challenge or a verification on one leaves the other's cookies alone."""
    secrets = {"a": "secret-of-app-a-0123456789", "b": "secret-of-app-b-0123456789"}

    async def page(request: Request) -> Response:
        return PlainTextResponse("page " + request.url.path)

    app: Any = Starlette(routes=[Route("/a/account", page), Route("/b/account", page)])
    for name, secret in secrets.items():
        app = Voice2FAMiddleware(
            app,
            identify=identify,
            protect=[f"/{name}/account"],
            settings=Voice2FASettings(secret_key=secret, prefix=f"/{name}/voice2fa"),
            store=MemoryStore(),
            caller=RecordingCaller(),
        )
    alice = ("alice", "+12025550143", "")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        c.cookies.set("test_user", "alice")
        for name in secrets:
            r = await c.get(f"/{name}/account")
            assert r.status_code == 303 and r.headers["location"].startswith(f"/{name}/voice2fa/verify")
            assert r.headers["set-cookie"].startswith(f"voice2fa_{name}_voice2fa_pending="), r.headers["set-cookie"]
        # Each app's proof under its own name: both hold at once.
        for name, secret in secrets.items():
            c.cookies.set(f"voice2fa_{name}_voice2fa_verified", Keyring([secret]).sign_proof("verified", alice))
        for name in secrets:
            assert (await c.get(f"/{name}/account")).status_code == 200
    # The default prefix keeps the names existing cookies have; an explicit start wins.
    assert Voice2FASettings(secret_key=SECRET).cookie_names_start == "voice2fa_"
    explicit = Voice2FASettings(secret_key=SECRET, prefix="/a/voice2fa", cookie_name_prefix="app_a_")
    assert explicit.cookie_names_start == "app_a_"

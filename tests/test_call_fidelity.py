"""The call itself (issue "The call itself"), end to end on a real server with the SignalWire double:
"not me" (press 9), answering machines, extensions, pacing to the provider's calls per second,
and caller ids per country. Where the store takes part, on MemoryStore and RedisStore.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.requests import HTTPConnection

from voice2fa_middleware import ConfigurationError, Identity, MemoryStore, Voice2FASettings
from voice2fa_middleware._core.telemetry import INSTRUMENTS
from voice2fa_middleware._telephony.numbers import check_phone, mask, send_digits
from voice2fa_middleware._telephony.signatures import compute_signature
from voice2fa_middleware.testing import SignalWireDouble

from .conftest import Harness, RecordingCaller, make_store

STORES = ["memory", pytest.param("redis", marks=pytest.mark.redis)]
JSON = {"accept": "application/json"}


def fields(double: SignalWireDouble, index: int = -1) -> dict[str, str]:
    """The form of a Create Call the double received (the last one by default)."""
    return dict(double.create_requests[index])


def status_of(client: httpx.Client) -> dict[str, object]:
    response = client.get("/voice2fa/verify/status", headers=JSON)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def start(h: Harness, client: httpx.Client) -> None:
    """Open a protected page as a browser and land on the verify page."""
    r = client.get("/account")
    assert r.status_code == 303, r.text
    assert client.get(r.headers["location"]).status_code == 200


def signed_post(url: str, key: str, form: list[tuple[str, str]]) -> httpx.Response:
    """A webhook as the carrier sends it: signed with the double's key."""
    signature = compute_signature(key, url, form)
    return httpx.post(url, data=dict(form), headers={"X-SignalWire-Signature": signature}, timeout=10)


# -- 1. "not me": 9 in the call ---------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_pressing_9_reports_the_call_and_pauses_calls(store: str, harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(store=store, reported_pause=2)
    h.double.presses = ("9",)
    with h.client() as client:
        start(h, client)
        call = h.double.wait_for_calls(1)[0]
        assert "If you did not try to sign in, press 9." in call.says[0]
        assert call.code() is None, call.says  # the code is never read
        assert any("change your password" in text for text in call.says), call.says
        assert call.laml_status_codes == [200, 200]
        reported = [e for e in h.events if e.kind == "call_reported"]
        assert len(reported) == 1 and reported[0].detail["country"] == "US"
        # The verify page's status poll says what happened; the page itself too.
        assert status_of(client)["call_status"] == "reported"
        page = client.get("/voice2fa/verify?next=/account")
        assert page.status_code == 410 and "You reported this call" in page.text
        # No new call while paused: refused before anything is charged, with when to come back.
        before = len(h.double.create_requests)
        again = client.get("/account", headers=JSON)
        assert again.status_code == 429, again.text
        assert again.json()["error"] == "reported" and "calls are paused" in again.json()["message"]
        assert int(again.headers["retry-after"]) >= 1
        browser = client.get("/account")
        assert browser.status_code == 429 and "You reported a call you did not expect" in browser.text
        assert len(h.double.create_requests) == before
        assert [e.detail.get("reason") for e in h.events if e.kind == "call_refused"] == ["reported", "reported"]
        # Once the pause is over, calls go again (and a person pressing 1 hears the code).
        time.sleep(2.2)
        h.double.presses = ("1",)
        csrf, code = h.challenge(client)
        assert h.verify(client, code, csrf).status_code == 303


def test_a_reported_call_is_said_in_the_challenges_language(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    h.double.presses = ("9",)
    with h.client(headers={"accept-language": "fr"}) as client:
        start(h, client)
        call = h.double.wait_for_calls(1)[0]
        assert "appuyez sur 9" in call.says[0]
        assert any("changez votre mot de passe" in text for text in call.says), call.says
        assert set(call.say_languages) == {"fr-FR"}
        labels = client.get("/voice2fa/verify?next=/account")
        assert "Vous avez signalé cet appel" in labels.text


def test_reported_pause_zero_still_cancels_but_does_not_pause(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(reported_pause=0)
    h.double.presses = ("9",)
    with h.client() as client:
        start(h, client)
        h.double.wait_for_calls(1)
        assert status_of(client)["call_status"] == "reported"
        h.double.presses = ("1",)
        csrf, code = h.challenge(client)  # a new challenge and a new call at once
        assert h.verify(client, code, csrf).status_code == 303


def test_reported_call_metric_is_declared() -> None:
    assert "voice2fa.calls.reported" in INSTRUMENTS and "voice2fa.calls.machine" in INSTRUMENTS


# -- 2. answering machines ------------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_a_voicemail_hears_no_code_and_the_page_says_so(store: str, harness_factory: Callable[..., Harness]) -> None:
    double = SignalWireDouble(answered_by="machine_end_beep").start()
    h = harness_factory(store=store, double=double)
    with h.client() as client:
        start(h, client)
        call = double.wait_for_calls(1)[0]
        form = fields(double)
        assert form["MachineDetection"] == "DetectMessageEnd" and form["AsyncAmd"] == "true"
        assert form["AsyncAmdStatusCallbackMethod"] == "POST"
        assert form["AsyncAmdStatusCallback"] == form["StatusCallback"] + "/amd"
        assert call.answered_by == "machine_end_beep" and call.amd_callback_codes == [204]
        assert call.code() is None, call.says
        assert status_of(client)["call_status"] == "machine"  # the "completed" that followed does not hide it
        assert any(e.kind == "call_status" and e.detail["status"] == "machine" for e in h.events)
        # The machine "presses" a key after the verdict (a beep, noise): the LaML hangs up.
        base = [("CallSid", call.sid), ("AccountSid", call.account_sid), ("CallStatus", "in-progress")]
        late = signed_post(call.url + "/code", "PSKtest-signing-key", [*base, ("Digits", "1")])
        assert late.status_code == 200 and "<Hangup" in late.text and "<Say" not in late.text
        page = client.get("/voice2fa/verify?next=/account")
        assert "Your voicemail answered" in page.text
        # The person asks for another call, and picks up this time.
        double.answered_by = "human"
        h.clock.offset += 31  # the resend cooldown
        sent = client.post("/voice2fa/resend", data={"csrf_token": csrf_from(page.text), "next": "/account"})
        assert sent.status_code == 303, sent.text
        second = double.wait_for_calls(2)[-1]
        assert second.answered_by == "human" and second.code() is not None
        ok = h.verify(client, second.code() or "", csrf_from(page.text))
        assert ok.status_code == 303 and ok.headers["location"] == "/account"


def csrf_from(html: str) -> str:
    from .conftest import csrf_of

    return csrf_of(html)


def test_without_detection_nothing_is_asked_for(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(answering_machine_detection=False)
    with h.client() as client:
        csrf, code = h.challenge(client)
        form = fields(h.double)
        assert not {"MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback"} & form.keys()
        assert h.double.calls[0].answered_by == ""
        assert h.verify(client, code, csrf).status_code == 303


def test_a_person_with_detection_on_hears_the_code(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    with h.client() as client:
        csrf, code = h.challenge(client)
        assert h.double.calls[0].answered_by == "human" and h.double.calls[0].amd_callback_codes == [204]
        assert status_of(client)["call_status"] == "completed"
        assert h.verify(client, code, csrf).status_code == 303


def test_amd_callback_must_be_signed(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    with h.client() as client:
        h.challenge(client)
        call = h.double.calls[0]
        url = fields(h.double)["AsyncAmdStatusCallback"]
        form = [("CallSid", call.sid), ("AnsweredBy", "machine_end_beep")]
        forged = httpx.post(url, data=dict(form), headers={"X-SignalWire-Signature": "bad"}, timeout=10)
        assert forged.status_code == 403
        assert status_of(client)["call_status"] == "completed"


@pytest.mark.parametrize(("outcome", "label"), [("no-answer", "not answered"), ("busy", "busy")])
def test_no_answer_and_busy(outcome: str, label: str, harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(double=SignalWireDouble(outcome=outcome).start())
    with h.client() as client:
        start(h, client)
        h.double.wait_for_calls(1)
        assert status_of(client)["call_status"] == outcome
        assert label in client.get("/voice2fa/verify?next=/account").text


def test_a_key_pressed_too_late_is_not_heard(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(double=SignalWireDouble(press_delay=11).start())  # the prompt waits 10 s
    with h.client() as client:
        start(h, client)
        call = h.double.wait_for_calls(1)[0]
        assert call.code() is None and "We did not receive a key press. Goodbye." in call.says
        assert call.laml_status_codes == [200]


def test_a_slow_key_press_within_the_timeout_is_heard(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(double=SignalWireDouble(press_delay=0.3).start())
    with h.client() as client:
        csrf, code = h.challenge(client)
        assert h.verify(client, code, csrf).status_code == 303


# -- 3. extensions -----------------------------------------------------------------------------------


def test_extensions_round_trip() -> None:
    checked = check_phone("+1 202 555 0100 ext. 123", None)
    assert checked.ok and checked.e164 == "+12025550100;ext=123"
    assert check_phone(checked.e164, None).e164 == checked.e164  # what the app saves comes back the same
    assert mask(checked.e164) == "•••• 0100, ext. 123" and mask("+12025550143") == "•••• 0143"
    assert send_digits(checked.e164) == "wwww123" and send_digits("+12025550143") == ""
    assert check_phone("+1 202 555 0100 ext. 12345678", None).reason == "invalid"


def test_an_extension_is_dialled_after_connect(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    with httpx.Client(base_url=h.url, cookies={"test_user": "alice", "test_phone": "+12025550100x123"}) as client:
        r = client.get("/account")
        page = client.get(r.headers["location"])
        assert "••••\u00a00100,\u00a0ext.\u00a0123" in page.text  # the page keeps it on one line
        call = h.double.wait_for_calls(1)[0]
        form = fields(h.double)
        assert form["To"] == "+12025550100" and form["SendDigits"] == "wwww123"
        assert call.send_digits == "wwww123"
        assert h.verify(client, call.code() or "", csrf_from(page.text)).status_code == 303


def test_a_caller_without_send_digits_still_calls_the_line(harness_factory: Callable[..., Harness]) -> None:
    caller = RecordingCaller()  # only place_call(to, from_, laml_url, status_url)
    h = harness_factory(caller=caller)
    with httpx.Client(base_url=h.url, cookies={"test_user": "alice", "test_phone": "+12025550100x123"}) as client:
        assert client.get("/account").status_code == 303
        assert [c["to"] for c in caller.calls] == ["+12025550100"]


# -- 4. pacing ------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("store", STORES)
async def test_reserve_slot_hands_out_one_slot_each(store: str, request: pytest.FixtureRequest) -> None:
    s = make_store(store, request)
    try:
        now = time.time()
        assert await s.reserve_slot("pace:test", 0.5, now, 2.0) == 0.0
        assert await s.reserve_slot("pace:test", 0.5, now, 2.0) == pytest.approx(0.5, abs=0.002)
        assert await s.reserve_slot("pace:test", 0.5, now, 2.0) == pytest.approx(1.0, abs=0.002)
        # Over the longest wait: refused, and nothing taken (the next one gets the same slot).
        assert await s.reserve_slot("pace:test", 0.5, now, 1.2) == pytest.approx(1.5, abs=0.002)
        assert await s.reserve_slot("pace:test", 0.5, now, 2.0) == pytest.approx(1.5, abs=0.002)
        # Later on, the bucket is empty again.
        assert await s.reserve_slot("pace:test", 0.5, now + 10, 2.0) == 0.0
    finally:
        await s.aclose()


def many_users(prefix: str = "u") -> Callable[[HTTPConnection], object]:
    async def identify(conn: HTTPConnection) -> Identity | None:
        user = conn.cookies.get("test_user", "")
        if not user.startswith(prefix) or not user[len(prefix) :].isdigit():
            return None
        return Identity(user, f"+120255501{int(user[len(prefix) :]):02d}")

    return identify


def all_at_once(url: str, users: list[str], path: str = "/account") -> list[tuple[int, float, httpx.Response]]:
    """Each user opens ``path`` at the same moment; (status, seconds taken, response) each."""
    results: list[tuple[int, float, httpx.Response]] = []
    barrier = threading.Barrier(len(users))

    def one(user: str) -> None:
        with httpx.Client(base_url=url, cookies={"test_user": user}, timeout=30) as client:
            barrier.wait()
            began = time.monotonic()
            r = client.get(path, headers=JSON)
            results.append((r.status_code, time.monotonic() - began, r))

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("store", STORES)
def test_calls_wait_for_their_slot(store: str, harness_factory: Callable[..., Harness]) -> None:
    # The double takes 3 calls a second; paced at 2, the calls keep under it whatever their
    # jitter on the way (unpaced, 6 calls at once would meet 429s).
    double = SignalWireDouble(calls_per_second=3).start()
    h = harness_factory(store=store, double=double, calls_per_second=2, middleware={"identify": many_users()})
    began = time.monotonic()
    results = all_at_once(h.url, [f"u{i}" for i in range(6)])
    assert sorted(r[0] for r in results) == [401] * 6, [r[2].text for r in results]
    assert time.monotonic() - began >= 2.0  # slots 0, 0.5 ... 2.5 s
    arrived = sorted(at - began for at in double.created_at)
    assert 429 not in double.rejected and len(double.create_requests) == 6, arrived
    # Slot k is k/2 s after the first, which is after ``began``: a request may arrive late (a
    # busy machine), never early. Gaps between arrivals can be short after a late one.
    assert max(r[1] for r in results) >= 2.0, arrived
    assert all(at >= k * 0.5 - 0.05 for k, at in enumerate(arrived)), arrived
    assert double.wait_for_calls(6) and not [e for e in h.events if e.kind == "provider_circuit"]


@pytest.mark.parametrize("store", STORES)
def test_a_slot_past_the_call_timeout_is_refused_and_refunded(
    store: str, harness_factory: Callable[..., Harness]
) -> None:
    h = harness_factory(store=store, calls_per_second=1, call_timeout=1.0, middleware={"identify": many_users()})
    results = all_at_once(h.url, [f"u{i}" for i in range(4)])
    statuses = sorted(r[0] for r in results)
    assert statuses == [401, 401, 503, 503], [r[2].text for r in results]
    for status, _took, response in results:
        if status == 503:
            assert response.json()["error"] == "calls_busy" and int(response.headers["retry-after"]) >= 1
    assert [e.detail["reason"] for e in h.events if e.kind == "call_refused"] == ["paced", "paced"]
    # Nothing was charged for the refused calls: their users get a call when they come back.
    refused = [r[2].request.headers["cookie"].split("=", 1)[1] for r in results if r[0] == 503]
    time.sleep(1.5)
    for user in refused:
        with httpx.Client(base_url=h.url, cookies={"test_user": user}, timeout=30) as client:
            assert client.get("/account", headers=JSON).status_code == 401
    assert len(h.double.create_requests) == 4


def test_the_providers_429_is_waited_out(harness_factory: Callable[..., Harness]) -> None:
    """Unpaced calls over the provider's rate: each 429 is retried after its Retry-After."""
    double = SignalWireDouble(calls_per_second=1).start()
    h = harness_factory(double=double, calls_per_second=0, middleware={"identify": many_users()})
    results = all_at_once(h.url, [f"u{i}" for i in range(3)])
    assert sorted(r[0] for r in results) == [401] * 3, [r[2].text for r in results]
    assert 429 in double.rejected and len(double.calls) == 3
    assert not [e for e in h.events if e.kind in ("provider_circuit", "call_failed")]


def test_the_console_caller_is_not_paced(harness_factory: Callable[..., Harness]) -> None:
    """Development calls cost nothing and reach no provider: no slot is taken for them."""
    from voice2fa_middleware import ConsoleCaller

    store = MemoryStore()
    h = harness_factory(store=store, calls_per_second=1, caller=ConsoleCaller(signing_key="x", echo=False))
    with h.client() as client:
        assert client.get("/account").status_code == 303
    assert not store._slots


# -- 5. caller ids per country ---------------------------------------------------------------------------


def test_calls_come_from_the_countrys_number(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(from_numbers={"FR": "+33123456789"})
    with h.client(user="foreign") as client:  # +33 6 12 34 56 78
        start(h, client)
        h.double.wait_for_calls(1)
        assert fields(h.double)["From"] == "+33123456789"
    with h.client(user="alice") as client:
        start(h, client)
        h.double.wait_for_calls(2)
        assert fields(h.double)["From"] == h.double.from_number


def test_from_numbers_from_the_environment() -> None:
    env = {"VOICE2FA_FROM_NUMBERS": "FR=+33123456789, gb=+441234567890", "VOICE2FA_CALLS_PER_SECOND": "2.5"}
    s = Voice2FASettings.from_env(env, env_file=None)
    assert dict(s.from_numbers) == {"FR": "+33123456789", "GB": "+441234567890"}
    assert s.calls_per_second == 2.5 and s.reported_pause == 3600 and s.answering_machine_detection is True
    with pytest.raises(ConfigurationError, match="VOICE2FA_FROM_NUMBERS"):
        Voice2FASettings.from_env({"VOICE2FA_FROM_NUMBERS": "FR+33123456789"}, env_file=None)
    with pytest.raises(ConfigurationError, match="from_numbers"):
        Voice2FASettings(from_numbers={"France": "+33123456789"})


def test_webhook_urls_stay_on_the_app(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory()
    with h.client() as client:
        h.challenge(client)
        form = fields(h.double)
        assert urlsplit(form["AsyncAmdStatusCallback"]).netloc == urlsplit(h.url).netloc

"""Webhook signatures against the official SignalWire SDK's RequestValidator (the oracle).

Needs the ``signalwire`` extra; CI installs it. Both directions are checked: what the SDK
signs, the middleware accepts (through HTTP), and what our carrier signs, the SDK accepts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest

from voice2fa_middleware import compute_signature, is_valid_signature

from .conftest import Harness, RecordingCaller

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    request_validator = pytest.importorskip("signalwire.request_validator", reason="needs the signalwire extra")

pytestmark = pytest.mark.oracle

URLS = [
    "https://app.example.com/voice2fa/laml/tok",
    "https://app.example.com:8443/voice2fa/laml/tok?x=1&y=%20two",
    "http://127.0.0.1:8000/voice2fa/status/tok?lang=fr",
    "https://app.example.com/voice2fa/laml/tok?a=1&a=2",
]
FORMS = [
    {},
    {"CallSid": "a1b2", "CallStatus": "in-progress", "From": "+12025550100", "To": "+12025550143"},
    {"Digits": "1", "Caller": "+33 6 12", "Empty": "", "Unicode": "héllo ☎"},
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("form", FORMS)
def test_sdk_and_middleware_agree(url: str, form: dict[str, str]) -> None:
    key = "PSK_signing_key_123"
    sdk = request_validator.RequestValidator(key)
    theirs = sdk.build_signature_with_compatibility(url, form)
    assert theirs == compute_signature(key, url, form)
    body = urlencode(form)
    assert is_valid_signature(key, url, list(form.items()), body, theirs)
    assert sdk.validate(url, form, compute_signature(key, url, form))
    # SignalWire's own scheme (hex over URL + raw body) is accepted as the SDK accepts it.
    hex_sig = sdk.build_signature(url, body)
    assert sdk.validate(url, body, hex_sig)
    assert is_valid_signature(key, url, list(form.items()), body, hex_sig)
    # Any alteration is refused.
    altered = dict(form, CallSid="evil")
    assert not is_valid_signature(key, url, list(altered.items()), urlencode(altered), theirs)
    assert not is_valid_signature(key, url + "x", list(form.items()), body, theirs)
    assert not is_valid_signature("other-key", url, list(form.items()), body, theirs)
    flipped = theirs[:-2] + ("A" if theirs[-2] != "A" else "B") + theirs[-1]
    assert not is_valid_signature(key, url, list(form.items()), body, flipped)


@pytest.mark.parametrize("header", ["X-SignalWire-Signature", "X-Twilio-Signature"])
def test_middleware_accepts_sdk_signatures_over_http(harness_factory: Callable[..., Harness], header: str) -> None:
    caller = RecordingCaller()
    h = harness_factory(caller=caller)
    with h.client() as c:
        assert c.get("/account").status_code == 303
    laml = caller.calls[0]["url"]
    sdk = request_validator.RequestValidator(h.double.signing_key)
    form = {
        "CallSid": "CA-test-1",
        "CallStatus": "in-progress",
        "AccountSid": h.double.project,
        "From": "+12025550100",
        "To": "+12025550143",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    }
    good = httpx.post(laml, data=form, headers={header: sdk.build_signature_with_compatibility(laml, form)})
    assert good.status_code == 200 and "<Gather" in good.text
    # A signature made over another URL (here, with a query added) is refused.
    bad = httpx.post(laml, data=form, headers={header: sdk.build_signature_with_compatibility(laml + "?x=1", form)})
    assert bad.status_code == 403
    tampered = httpx.post(
        laml, data=dict(form, CallSid="CA-other"), headers={header: sdk.build_signature_with_compatibility(laml, form)}
    )
    assert tampered.status_code == 403

"""What the carrier does once a call is created: fetch the LaML with signed requests,
follow ``<Gather>`` and ``<Redirect>``, collect what ``<Say>`` says, post status callbacks.

Who answers is part of the play: a person (``answered_by="human"``, presses keys), or an
answering machine (``"machine_end_beep"`` and the other AnsweredBy values: never presses a
key); when the call asked for asynchronous answering machine detection, its verdict is
posted to the call's ``AsyncAmdStatusCallback`` once the first document is fetched, as the
carrier does while the greeting plays. A key pressed later than a ``<Gather>``'s timeout
(``press_delay``) is not heard: the document goes on after the ``<Gather>``.

Shared by the console caller (a laptop with no account) and the SignalWire test double.
"""

from __future__ import annotations

import asyncio
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from .signatures import compute_signature

logger = logging.getLogger("voice2fa.carrier")

# Single ASCII digits, each apart from the next by a comma or an ideographic comma (any language).
_SPOKEN_DIGITS = re.compile(r"(?<![0-9])[0-9](?:\s*[,、，]\s*[0-9](?![0-9]))+")


@dataclass
class SimulatedCall:
    """A call as the carrier saw it."""

    sid: str
    to: str
    from_: str
    url: str
    status_callback: str | None
    account_sid: str = ""
    says: list[str] = field(default_factory=list)
    say_languages: list[str] = field(default_factory=list)
    """The ``language`` of each ``<Say>``, in the order of ``says``."""
    statuses: list[str] = field(default_factory=list)
    laml_status_codes: list[int] = field(default_factory=list)
    status_callback_codes: list[int] = field(default_factory=list)
    send_digits: str = ""
    """Create Call's ``SendDigits``: the keys pressed once the call connects (an extension)."""
    amd_callback: str | None = None
    """Create Call's ``AsyncAmdStatusCallback``: where the answering machine verdict goes."""
    answered_by: str = ""
    """The verdict posted to ``amd_callback`` (``human``, ``machine_end_beep``...), once posted."""
    amd_callback_codes: list[int] = field(default_factory=list)
    error: str | None = None
    done: bool = False

    def code(self, digits: int | None = None) -> str | None:
        """The code spoken in the call: the first ``<Say>`` run of digits read one at a time
        ("0, 1, 2" or "0、1、2"), of ``digits`` digits (6 or more if not given)."""
        for text in self.says:
            runs = [re.sub(r"[^0-9]", "", run) for run in _SPOKEN_DIGITS.findall(text)]
            for found in [*runs, "".join(re.findall(r"[0-9]", text))]:
                if (len(found) == digits) if digits is not None else (len(found) >= 6):
                    return found
        return None


def _signed_headers(key: str, url: str, form: Sequence[tuple[str, str]]) -> dict[str, str]:
    signature = compute_signature(key, url, form)
    return {"X-SignalWire-Signature": signature, "X-Twilio-Signature": signature}


async def _post(client: httpx.AsyncClient, key: str, url: str, form: list[tuple[str, str]]) -> httpx.Response:
    return await client.post(url, data=dict(form), headers=_signed_headers(key, url, form))


async def simulate_call(
    client: httpx.AsyncClient,
    call: SimulatedCall,
    *,
    signing_key: str,
    outcome: str = "completed",
    presses: Sequence[str] = ("1",),
    max_documents: int = 6,
    answered_by: str = "human",
    press_delay: float = 0.0,
) -> SimulatedCall:
    """Play ``call`` to its end as the carrier would, filling in what was said and sent.

    ``answered_by``: ``"human"`` presses ``presses`` in turn, each ``press_delay`` seconds
    into its ``<Gather>``; anything else is an answering machine, which presses nothing."""
    base = [
        ("CallSid", call.sid),
        ("AccountSid", call.account_sid),
        ("From", call.from_),
        ("To", call.to),
        ("Direction", "outbound-api"),
        ("ApiVersion", "2010-04-01"),
    ]

    async def status(value: str, extra: Sequence[tuple[str, str]] = ()) -> None:
        call.statuses.append(value)
        if call.status_callback:
            resp = await _post(client, signing_key, call.status_callback, [*base, ("CallStatus", value), *extra])
            call.status_callback_codes.append(resp.status_code)

    try:
        await status("ringing")
        if outcome != "completed":
            await status(outcome)
            return call
        await status("in-progress")
        presses_left = list(presses) if answered_by == "human" else []
        url: str | None = call.url
        documents = 0
        pressed: str | None = None
        while url and documents < max_documents:
            documents += 1
            form = [*base, ("CallStatus", "in-progress")]
            if documents > 1 and pressed is not None:
                form.append(("Digits", pressed))
            resp = await _post(client, signing_key, url, form)
            call.laml_status_codes.append(resp.status_code)
            if resp.status_code != 200:
                call.error = f"LaML fetch answered {resp.status_code}"
                break
            if documents == 1 and call.amd_callback:
                call.answered_by = answered_by
                verdict = [*base, ("CallStatus", "in-progress"), ("AnsweredBy", answered_by)]
                amd = await _post(client, signing_key, call.amd_callback, verdict)
                call.amd_callback_codes.append(amd.status_code)
            next_url, pressed = _play(resp.text, call, presses_left, press_delay)
            if pressed is not None and press_delay:
                await asyncio.sleep(press_delay)  # a slow finger, still within the <Gather>'s timeout
            url = urljoin(url, next_url) if next_url else None
        await status("completed", [("CallDuration", "20")])
    except (httpx.HTTPError, ET.ParseError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"
        logger.warning("simulated call %s failed: %s", call.sid, type(exc).__name__)
    finally:
        call.done = True
    return call


def _play(
    document: str, call: SimulatedCall, presses_left: list[str], press_delay: float = 0.0
) -> tuple[str | None, str | None]:
    """Run one LaML document; returns the next URL to fetch and the key pressed, if any."""
    # The documents come from the app under test itself; expat resolves no external entities.
    root = ET.fromstring(document)  # noqa: S314
    for verb in root:
        if verb.tag == "Say":
            call.says.append((verb.text or "").strip())
            call.say_languages.append(verb.get("language", ""))
        elif verb.tag == "Gather":
            for inner in verb:
                if inner.tag == "Say":
                    call.says.append((inner.text or "").strip())
                    call.say_languages.append(inner.get("language", ""))
            if presses_left and verb.get("action"):
                key = presses_left.pop(0)
                if press_delay > float(verb.get("timeout", "5")):
                    continue  # too late: the carrier gave up waiting and goes on after the <Gather>
                return verb.get("action"), key
        elif verb.tag == "Redirect" and verb.text:
            return verb.text.strip(), None
        elif verb.tag in ("Hangup", "Reject"):
            return None, None
    return None, None

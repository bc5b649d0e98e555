"""The call status vocabulary of SignalWire's (and Twilio's) status callbacks, in one place.

A call goes ``queued`` → ``initiated`` → ``ringing`` → ``in-progress`` (``answered``) →
a final status. Callbacks can arrive out of order (each is its own HTTP request), so a
status only ever moves forward: ``RANK`` orders them, and a callback whose status ranks
below the one recorded changes nothing.

Two statuses are ours, not the provider's: ``machine`` (answering machine detection heard a
voicemail: the call hangs up without reading the code) and ``reported`` (the user pressed 9,
"I did not try to sign in"). They say why a call ended, so they outrank every other status:
the ``completed`` callback that follows does not hide them.
"""

from __future__ import annotations

# The events SignalWire is asked to report (Create Call's StatusCallbackEvent).
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
# A call in one of these is over.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# Every status a callback may carry.
CALL_STATUSES = frozenset({"queued", "initiated", "ringing", "in-progress", "answered", *FINAL_STATUSES})
# Why a call ended, as we tell it (never carried by a status callback).
MACHINE = "machine"
REPORTED = "reported"
OUTCOMES = frozenset({MACHINE, REPORTED})
# Answering machine detection's AnsweredBy values that mean "not a person".
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
# How far along each status is: a final status outranks every other.
RANK = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "answered": 3,
    **{status: 4 for status in FINAL_STATUSES},
    **{status: 5 for status in OUTCOMES},
}

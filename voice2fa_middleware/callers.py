"""The caller extension point: what places the call, and how webhooks are signed.

Write your own caller by implementing :class:`Caller` (``place_call``, and the optional
capabilities it declares, which :class:`BaseCaller` gives defaults for). The callers that
ship:

- :class:`SignalWireCaller`: SignalWire's Compatibility REST API on ``httpx.AsyncClient``.
- :class:`ConsoleCaller`: the development default with no credentials; calls no one.
- :class:`SignalWireSDKCaller`: the official SDK in a worker thread (``pip install '.[signalwire]'``).

``compute_signature`` and ``is_valid_signature`` sign and check webhooks as SignalWire does.
"""

from __future__ import annotations

from ._errors import CallError, ProviderUnavailableError
from ._telephony.callers import BaseCaller, Caller, ConsoleCaller, SignalWireCaller, SignalWireSDKCaller
from ._telephony.signatures import compute_signature, is_valid_signature

__all__ = [
    "BaseCaller",
    "CallError",
    "Caller",
    "ConsoleCaller",
    "ProviderUnavailableError",
    "SignalWireCaller",
    "SignalWireSDKCaller",
    "compute_signature",
    "is_valid_signature",
]

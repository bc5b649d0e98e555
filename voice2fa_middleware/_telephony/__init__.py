"""Everything about the phone call: phone numbers (``numbers``), the LaML documents the call
reads (``laml``), SignalWire's webhook signatures (``signatures``), what a carrier does with
a call (``simulator``, used by the console caller and the test double), the circuit breaker
(``breaker``) and the callers that place calls (``callers``). Public names are re-exported
by ``voice2fa_middleware.callers``."""

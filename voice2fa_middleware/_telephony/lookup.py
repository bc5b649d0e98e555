"""SignalWire's phone number lookup: the carrier's line type of a number (``voip``, ``wireless``,
``landline``...), which sees what number ranges cannot: a VoIP provider's ordinary-looking
numbers. ``GET {space}/api/relay/rest/lookup/phone_number/{e164}?include=carrier`` with the
project and token as HTTP Basic auth. Each lookup is billed by SignalWire: the middleware
asks only before the first call to a number and keeps the answer (``_flow.linetype``).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

logger = logging.getLogger("voice2fa")


class LineTypeLookup:
    """Asks SignalWire for a number's line type; ``None`` whenever it cannot tell."""

    def __init__(self, *, space: str, project: str, token: str, timeout: float = 5.0) -> None:
        self.base = space.rstrip("/") + "/api/relay/rest/lookup/phone_number/"
        self._client = httpx.AsyncClient(timeout=timeout, auth=(project, token))

    async def line_type(self, e164: str) -> str | None:
        try:
            response = await self._client.get(self.base + quote(e164), params={"include": "carrier"})
        except httpx.HTTPError as exc:
            logger.warning("voice2fa: the phone number lookup failed: %s", type(exc).__name__)
            return None
        if response.status_code != 200:
            logger.warning("voice2fa: the phone number lookup answered %d", response.status_code)
            return None
        try:
            carrier = response.json().get("carrier")
            kind = carrier.get("linetype") if isinstance(carrier, dict) else None
        except (ValueError, AttributeError):
            return None
        return kind.strip().lower() if isinstance(kind, str) and kind.strip() else None

    async def aclose(self) -> None:
        await self._client.aclose()

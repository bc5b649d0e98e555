"""The pytest plugin (entry point ``pytest11``): the test kit's fixtures in every test.

Loaded by pytest whenever the package is installed, so it imports nothing heavy itself: the
fixtures import ``voice2fa_middleware.testing`` (the ``testing`` extra) when first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import LiveServer, SignalWireDouble


@pytest.fixture
def signalwire_double() -> Iterator[SignalWireDouble]:
    """A running ``SignalWireDouble`` (SignalWire's API and carrier, on loopback)."""
    from .testing import SignalWireDouble

    with SignalWireDouble() as double:
        yield double


@pytest.fixture
def live_server_factory() -> Iterator[Callable[..., LiveServer]]:
    """``start(app, port=0) -> LiveServer``; every server started is stopped after the test."""
    from .testing import LiveServer

    servers: list[LiveServer] = []

    def start(app: Any, *, port: int = 0) -> LiveServer:
        server = LiveServer(app, port=port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

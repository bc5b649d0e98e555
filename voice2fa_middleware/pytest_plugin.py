"""The pytest plugin (entry point ``pytest11``): the test kit's fixtures in every test.

Loaded by pytest whenever the package is installed, so it imports nothing heavy itself: the
fixtures import ``voice2fa_middleware.testing`` (the ``testing`` extra) when first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
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


@pytest.fixture
def voice2fa_app(signalwire_double: SignalWireDouble) -> Iterator[Callable[..., LiveServer]]:
    """``serve(app, **settings) -> LiveServer``, for an app built at import time: served for this
    test only, its ``Voice2FAMiddleware`` pointed at ``signalwire_double`` (webhooks to the
    server's URL) with a fresh caller and store (``voice2fa_override``); the server is stopped
    and the app put back as it was after the test, so the next test starts clean."""
    from .testing import LiveServer, port_for_later, voice2fa_override

    with ExitStack() as stack:

        def serve(app: Any, **settings: Any) -> LiveServer:
            port = port_for_later()
            public_url = f"http://127.0.0.1:{port}"
            stack.enter_context(voice2fa_override(app, double=signalwire_double, public_url=public_url, **settings))
            return stack.enter_context(LiveServer(app, port=port))

        yield serve

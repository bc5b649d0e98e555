"""uvicorn's command line, with ``TCP_NODELAY`` on the socket it binds for ``--workers``.

With ``--workers N`` uvicorn binds the listening socket itself, with ``proto`` 0, and asyncio
turns Nagle's algorithm off only on accepted sockets whose ``proto`` is ``IPPROTO_TCP``. Each
response that goes out in two writes (h11: the head, then the body) then waits for the
client's delayed ACK, about 40 ms on Linux (uvicorn issue #3149, open): two workers served
a fifth of what one did, and (w) measured that stall, not the app. Set on the listening
socket, the option is inherited by every accepted connection. One worker is not affected
(asyncio binds that socket from ``getaddrinfo``, ``proto`` 6), so the bench runs it as before.

Usage: python -m benchmarks.serve benchmarks.app:app --workers 2 ...  (as ``uvicorn``)
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn.config
import uvicorn.main

_bind = uvicorn.config.Config.bind_socket


def _bind_without_nagle(self: Any) -> socket.socket:
    sock = _bind(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


uvicorn.config.Config.bind_socket = _bind_without_nagle  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(uvicorn.main.main())

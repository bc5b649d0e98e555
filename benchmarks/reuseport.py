"""One uvicorn server on a listening socket of its own, shared by port (``SO_REUSEPORT``):
(w)'s way of running N workers, started N times on one port.

``uvicorn --workers N`` shares one listening socket. When wrk opens its 32 connections at
once, whichever worker wakes first accepts most of them (asyncio accepts in a loop), so a
2-worker run is either balanced or nearly a 1-worker run: three back-to-back 3 s runs of one
2-worker server gave 4,652, 4,395 and 6,350 req/s, and (w)'s ratio was a draw between the
two. With a socket each, the kernel spreads connections over the N by a hash of their
addresses (as gunicorn's ``--reuse-port`` does). The socket is made with ``IPPROTO_TCP``, so
asyncio sets ``TCP_NODELAY`` on every connection (see ``serve.py``).

Usage: python -m benchmarks.reuseport benchmarks.app:app PORT
"""

from __future__ import annotations

import socket
import sys

import uvicorn


def main() -> None:
    app, port = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()

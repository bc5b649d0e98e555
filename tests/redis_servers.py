"""Real Redis Cluster and Redis Sentinel deployments on loopback, started by the tests.

``RedisClusterServers``: three cluster-enabled ``redis-server`` masters (no replicas), joined
with ``redis-cli --cluster create``. ``RedisSentinelSet``: a master, one replica and three
``redis-sentinel`` processes monitoring it as ``mymaster``; it can kill the master and wait for
the sentinels to fail over.

Both talk to the servers with a tiny RESP client of their own (no redis-py), so they behave the
same whatever redis-py version is installed. Every process is registered for ``atexit`` cleanup
as soon as it is spawned, and ``start()`` stops whatever it started if it fails midway.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

from voice2fa_middleware.testing import port_for_later

HOST = "127.0.0.1"
POLL = 0.05

RespValue: TypeAlias = "str | int | list[RespValue] | None"


class RespError(Exception):
    """An error reply (``-ERR ...``) from a server."""


# -- a minimal RESP2 client ----------------------------------------------------------------------


def _encode(args: Sequence[str | int]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(reader: Callable[[], bytes], read_exact: Callable[[int], bytes]) -> RespValue:
    line = reader()
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RespError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else read_exact(size + 2)[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(reader, read_exact) for _ in range(count)]
    raise RespError(f"unexpected reply {line!r}")


def command(port: int, *args: str | int, host: str = HOST, timeout: float = 1.0) -> RespValue:
    """Send one command on a fresh connection and return the decoded reply.

    Raises ``OSError`` when the server is unreachable and ``RespError`` on an error reply.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        stream = sock.makefile("rb")

        def readline() -> bytes:
            line = stream.readline()
            if not line.endswith(b"\r\n"):
                raise ConnectionError(f"connection to {host}:{port} closed mid-reply")
            return line[:-2]

        def read_exact(size: int) -> bytes:
            data = stream.read(size)
            if len(data) != size:
                raise ConnectionError(f"connection to {host}:{port} closed mid-reply")
            return data

        return _read_reply(readline, read_exact)


def info_fields(text: RespValue) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a dict."""
    fields: dict[str, str] = {}
    for line in str(text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


def _pairs(reply: RespValue) -> dict[str, str]:
    """A flat ``[k1, v1, k2, v2, ...]`` reply as a dict."""
    items = reply if isinstance(reply, list) else []
    return {str(k): str(v) for k, v in zip(items[::2], items[1::2], strict=False)}


def _try(port: int, *args: str | int) -> RespValue:
    """``command`` that answers ``None`` instead of raising, for polling."""
    try:
        return command(port, *args, timeout=0.5)
    except (OSError, RespError):
        return None


def wait_until(what: str, check: Callable[[], bool], timeout: float, details: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            extra = f": {details()}" if details else ""
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(POLL)


def distinct_ports(count: int, taken: Iterable[int] = ()) -> list[int]:
    """``count`` free loopback ports, distinct from each other and from ``taken``."""
    seen = set(taken)
    ports: list[int] = []
    while len(ports) < count:
        port = port_for_later()
        if port not in seen:
            seen.add(port)
            ports.append(port)
    return ports


# -- processes -----------------------------------------------------------------------------------


class _Processes:
    """Spawned processes (by port) and a temporary directory, all cleaned up at the latest at exit."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._closed = False
        atexit.register(self.stop)

    def spawn(self, port: int, argv: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.dir / log_name, "ab") as log:
            # A session of its own: Ctrl-C reaches pytest only, which then stops the servers.
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.procs[port] = proc
        return proc

    def log(self, log_name: str, lines: int = 30) -> str:
        try:
            text = (self.dir / log_name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, port: int) -> None:
        """SIGKILL the process on ``port`` (no clean shutdown) and reap it."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        procs, self.procs = list(self.procs.values()), {}
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if not self._closed:
            self._closed = True
            shutil.rmtree(self.dir, ignore_errors=True)
            atexit.unregister(self.stop)


def _server_argv(binary: str, port: int, directory: Path, *extra: str) -> list[str]:
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        *extra,
    ]


def _answers_ping(port: int) -> bool:
    return _try(port, "PING") == "PONG"


# -- Redis Cluster -------------------------------------------------------------------------------


class RedisClusterServers:
    """Three cluster-enabled masters on loopback, no replicas, all 16384 slots assigned.

    ``ports``: the client ports; ``bus_ports``: the cluster bus ports (chosen explicitly, as the
    default port + 10000 may not exist); ``url``: ``redis://127.0.0.1:P1/0`` (any node works as
    a startup node); ``urls``: one URL per node; ``startup_nodes``: ``"host:port"`` strings.
    """

    def __init__(self, server_binary: str, cli_binary: str, *, masters: int = 3) -> None:
        self.server_binary = server_binary
        self.cli_binary = cli_binary
        self.ports = distinct_ports(masters)
        self.bus_ports = distinct_ports(masters, taken=self.ports)
        self.url = f"redis://{HOST}:{self.ports[0]}/0"
        self.urls = [f"redis://{HOST}:{port}/0" for port in self.ports]
        self.startup_nodes = [f"{HOST}:{port}" for port in self.ports]
        self._procs: _Processes | None = None

    @property
    def dir(self) -> Path | None:
        return self._procs.dir if self._procs else None

    def start(self, timeout: float = 20.0) -> None:
        procs = self._procs = _Processes("voice2fa-redis-cluster-")
        try:
            for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
                argv = _server_argv(
                    self.server_binary,
                    port,
                    procs.dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(bus_port),
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                )
                procs.spawn(port, argv, f"redis-{port}.log")
            for port in self.ports:
                wait_until(
                    f"cluster node {port} to answer PING",
                    functools.partial(_answers_ping, port),
                    10,
                    functools.partial(procs.log, f"redis-{port}.log"),
                )
            created = subprocess.run(
                [self.cli_binary, "--cluster", "create", *self.startup_nodes, "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed (rc {created.returncode}):\n{created.stdout}\n{created.stderr}"
                )
            wait_until("cluster_state:ok on every node", self._all_ok, timeout, self._states)
        except BaseException:
            self.stop()
            raise

    def _cluster_info(self, port: int) -> dict[str, str]:
        return info_fields(_try(port, "CLUSTER", "INFO"))

    def _all_ok(self) -> bool:
        for port in self.ports:
            info = self._cluster_info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(len(self.ports)):
                return False
        return True

    def _states(self) -> str:
        return ", ".join(
            f"{port}: {self._cluster_info(port).get('cluster_state')}"
            f"/{self._cluster_info(port).get('cluster_known_nodes')} nodes"
            for port in self.ports
        )

    def flushall(self) -> None:
        """Empty every master."""
        for port in self.ports:
            command(port, "FLUSHALL")

    def stop(self) -> None:
        if self._procs is not None:
            self._procs.stop()
            self._procs = None

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- Redis Sentinel ------------------------------------------------------------------------------


class RedisSentinelSet:
    """A master, one replica and three sentinels (quorum 2) monitoring it as ``service``.

    ``sentinels``: ``[(host, port), ...]``; ``url``: this project's
    ``redis+sentinel://h:p,h:p,h:p/mymaster/0``. ``kill_master()`` SIGKILLs the current master;
    ``wait_for_failover(old_port)`` waits for a promoted replica; ``restart_killed()`` brings the
    killed node back as a replica of the new master, so a further failover is possible.
    """

    service = "mymaster"

    def __init__(self, server_binary: str, sentinel_binary: str, *, sentinels: int = 3) -> None:
        self.server_binary = server_binary
        self.sentinel_binary = sentinel_binary
        master, replica, *sentinel_ports = distinct_ports(2 + sentinels)
        self.data_ports = [master, replica]
        self.sentinel_ports = sentinel_ports
        self.sentinels: list[tuple[str, int]] = [(HOST, port) for port in sentinel_ports]
        nodes = ",".join(f"{HOST}:{port}" for port in sentinel_ports)
        self.url = f"redis+sentinel://{nodes}/{self.service}/0"
        self.killed: list[int] = []
        self._procs: _Processes | None = None

    @property
    def dir(self) -> Path | None:
        return self._procs.dir if self._procs else None

    # -- starting and stopping

    def _node_dir(self, port: int) -> Path:
        assert self._procs is not None, "not started"
        directory = self._procs.dir / f"node-{port}"
        directory.mkdir(exist_ok=True)
        return directory

    def _start_data_node(self, port: int, replica_of: int | None) -> None:
        assert self._procs is not None, "not started"
        # No 5 s wait for more replicas before a full sync (diskless sync's default delay).
        extra = ["--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            extra += ["--replicaof", HOST, str(replica_of)]
        argv = _server_argv(self.server_binary, port, self._node_dir(port), *extra)
        self._procs.spawn(port, argv, f"redis-{port}.log")

    def _start_sentinel(self, port: int, master_port: int) -> None:
        assert self._procs is not None, "not started"
        directory = self._node_dir(port)
        conf = directory / "sentinel.conf"  # sentinels rewrite their config: a writable file each
        conf.write_text(
            f"port {port}\n"
            f"bind {HOST}\n"
            "daemonize no\n"
            f"dir {directory}\n"
            f"sentinel monitor {self.service} {HOST} {master_port} 2\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self._procs.spawn(port, [self.sentinel_binary, str(conf)], f"sentinel-{port}.log")

    def start(self, timeout: float = 30.0) -> None:
        self._procs = _Processes("voice2fa-redis-sentinel-")
        master, replica = self.data_ports
        try:
            self._start_data_node(master, None)
            wait_until("the master to answer PING", lambda: _answers_ping(master), 10, self._log_of(master))
            self._start_data_node(replica, master)
            wait_until(
                "the replica's link to the master",
                lambda: self._link_up(replica),
                timeout,
                self._log_of(replica),
            )
            # Only now: a sentinel learns of replicas from the master's INFO, which it asks for
            # at once, then every 10 s. Started earlier, it could miss the replica for 10 s.
            for port in self.sentinel_ports:
                self._start_sentinel(port, master)
            wait_until(
                "every sentinel to see the replica and the other sentinels",
                lambda: self._sentinels_agree(master),
                timeout,
                self._sentinel_views,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._procs is not None:
            self._procs.stop()
            self._procs = None

    def __enter__(self) -> RedisSentinelSet:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state

    def _log_of(self, port: int) -> Callable[[], str]:
        def log() -> str:
            assert self._procs is not None
            return self._procs.log(f"redis-{port}.log")

        return log

    def _link_up(self, port: int) -> bool:
        return info_fields(_try(port, "INFO", "replication")).get("master_link_status") == "up"

    def sentinel_master(self, sentinel_port: int) -> dict[str, str]:
        """``SENTINEL MASTER mymaster`` from one sentinel, as a dict (empty if it cannot answer)."""
        return _pairs(_try(sentinel_port, "SENTINEL", "MASTER", self.service))

    def _sentinel_replicas(self, sentinel_port: int) -> list[dict[str, str]]:
        reply = _try(sentinel_port, "SENTINEL", "REPLICAS", self.service)
        return [_pairs(item) for item in reply] if isinstance(reply, list) else []

    def _sentinels_agree(self, master_port: int, healthy_replicas: int = 1, *, link_ok: bool = True) -> bool:
        """Every sentinel sees ``master_port`` up as master, the other sentinels, and at least
        ``healthy_replicas`` replicas up (with their link to the master up, if ``link_ok``: the
        sentinels learn that from the replica's INFO, asked at connection, then every 10 s)."""
        others = str(len(self.sentinel_ports) - 1)
        for port in self.sentinel_ports:
            view = self.sentinel_master(port)
            if view.get("port") != str(master_port) or view.get("num-other-sentinels") != others:
                return False
            flags = view.get("flags", "").split(",")
            if "master" not in flags or "s_down" in flags or "o_down" in flags:
                return False
            healthy = [
                r
                for r in self._sentinel_replicas(port)
                if not {"s_down", "o_down", "disconnected"} & set(r.get("flags", "").split(","))
                and (r.get("master-link-status") == "ok" or not link_ok)
            ]
            if len(healthy) < healthy_replicas:
                return False
        return True

    def _sentinel_views(self) -> str:
        return "; ".join(
            f"sentinel {port}: master port {view.get('port')}, flags {view.get('flags')}, "
            f"num-slaves {view.get('num-slaves')}, num-other-sentinels {view.get('num-other-sentinels')}"
            for port, view in ((port, self.sentinel_master(port)) for port in self.sentinel_ports)
        )

    def master_port(self, sentinel_port: int | None = None) -> int:
        """The master's port, as a sentinel reports it (``SENTINEL get-master-addr-by-name``)."""
        candidates = [sentinel_port] if sentinel_port is not None else self.sentinel_ports
        for port in candidates:
            reply = _try(port, "SENTINEL", "get-master-addr-by-name", self.service)
            if isinstance(reply, list) and len(reply) == 2:
                return int(str(reply[1]))
        raise RuntimeError("no sentinel knows the master")

    def role(self, port: int) -> str | None:
        """``"master"``, ``"slave"``, or ``None`` when the node does not answer."""
        reply = _try(port, "ROLE")
        return str(reply[0]) if isinstance(reply, list) and reply else None

    # -- failover

    def kill_master(self) -> int:
        """SIGKILL the node that is currently master; its port."""
        assert self._procs is not None, "not started"
        port = self.master_port()
        self._procs.kill(port)
        self.killed.append(port)
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until every sentinel reports a master other than ``old_port`` and that node
        answers ``ROLE`` as master; its port."""
        new_port: list[int] = []

        def promoted() -> bool:
            ports = set()
            for port in self.sentinel_ports:
                reply = _try(port, "SENTINEL", "get-master-addr-by-name", self.service)
                if not (isinstance(reply, list) and len(reply) == 2):
                    return False
                ports.add(int(str(reply[1])))
            if len(ports) != 1 or old_port in ports:
                return False
            (port,) = ports
            if self.role(port) != "master":
                return False
            new_port[:] = [port]
            return True

        wait_until(f"a failover away from {old_port}", promoted, timeout, self._sentinel_views)
        return new_port[0]

    def restart_killed(self, timeout: float = 30.0) -> list[int]:
        """Start the killed nodes again as replicas of the current master, and wait until they
        are synced and every sentinel sees them healthy; their ports."""
        master = self.master_port()
        restarted, self.killed = self.killed, []
        for port in restarted:
            self._start_data_node(port, master)
        for port in restarted:
            wait_until(f"restarted node {port} to sync", functools.partial(self._link_up, port), timeout)
        wait_until(
            "every sentinel to see the restarted replicas",
            lambda: self._sentinels_agree(master, healthy_replicas=len(self.data_ports) - 1, link_ok=False),
            timeout,
            self._sentinel_views,
        )
        return restarted

    def flushall(self) -> None:
        """Empty the current master (the replicas follow)."""
        command(self.master_port(), "FLUSHALL")

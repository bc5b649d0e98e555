"""From a URL to a redis-py asyncio client: one server, a Sentinel-managed master, or a Cluster.

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one server, as redis-py reads them;
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``, or
  ``rediss+sentinel://`` for TLS to the master: the master that the sentinels name, found
  again after a failover. ``?sentinel_password=...`` (and ``sentinel_username``) when the
  sentinels require their own credentials;
- ``redis+cluster://[[user]:password@]host:port[,host:port...]``, or ``rediss+cluster://``:
  a Redis Cluster, found from any of its nodes.

With TLS, these forms take redis-py's certificate options in the query (``ssl_ca_certs``,
``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``,
``ssl_check_hostname``, checked by default); any other option is refused, not ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

SENTINEL_PORT = 26379
REDIS_PORT = 6379


@dataclass
class Connection:
    """A client, and what must be closed with it (a Sentinel's own connections)."""

    client: Redis | RedisCluster
    cluster: bool
    others: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.client.aclose()
        for other in self.others:
            await other.aclose()


def _hosts(netloc: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``[user[:password]@]host[:port][,host[:port]...]``, IPv6 in brackets."""
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = item.partition(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"not a host[:port]: {item!r}")
        found.append((host, _port(port) if port else default_port))
    if not found:
        raise ValueError("the URL names no host")
    return username, password, found


def _port(text: str) -> int:
    """A port number, or a ``ValueError`` that says what is wrong (not Python's words)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def _check_server_url(url: str) -> None:
    """Refuse what redis-py would fail on later, or with a traceback of its own: a port out of
    range or not a number (``redis://host:99999``), a scheme it does not know."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"the URL starts with {parts.scheme + '://' if parts.scheme else 'no scheme'}; "
            "use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    if parts.scheme.lower() == "unix":
        return
    host_port = parts.netloc.rpartition("@")[2]
    port = host_port.rpartition("]")[2] if host_port.startswith("[") else host_port
    if ":" in port:
        _port(port.rpartition(":")[2])
    if not parts.hostname:
        raise ValueError("the URL names no host")


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


TLS_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


def _tls(query: dict[str, list[str]], tls: bool, allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    """The TLS keyword arguments from the query; unknown options are refused."""
    unknown = sorted(set(query) - set(TLS_OPTIONS) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) in the Redis URL: {', '.join(unknown)}")
    given = {name: _one(query, name) for name in TLS_OPTIONS if _one(query, name) is not None}
    if given and not tls:
        raise ValueError("TLS options need the rediss+ form of the URL")
    if not tls:
        return {}
    options: dict[str, Any] = {"ssl": True, "ssl_check_hostname": True, **given}
    if "ssl_check_hostname" in given:
        options["ssl_check_hostname"] = str(given["ssl_check_hostname"]).lower() in ("1", "true", "yes")
    return options


def connect(url: str, *, timeout: float, max_connections: int) -> Connection:
    """The client for ``url`` (see the module's docstring), with timeouts on every call."""
    scheme, _, _ = url.partition("://")
    scheme = scheme.lower()
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
    }
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, scheme == "rediss+cluster", common, max_connections)
    # No retries, whatever redis-py's default of the day: a script that may have run (its
    # answer lost) must not run again; the request fails closed on the error instead.
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    common["retry"] = Retry(NoBackoff(), 0)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(url, scheme == "rediss+sentinel", common, max_connections)
    from redis.asyncio import BlockingConnectionPool, Redis

    _check_server_url(url)
    # A blocking pool: when every connection is in use, a command waits for one (up to the
    # store timeout) instead of failing at once: a busy pool is not a Redis that is down.
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout, **common)
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # the client owns its pool (what Redis.from_pool does)
    return Connection(client, cluster=False)


def _sentinel(url: str, tls: bool, common: dict[str, Any], max_connections: int) -> Connection:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(url)
    username, password, sentinels = _hosts(parts.netloc, SENTINEL_PORT)
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a Sentinel URL ends with /service_name or /service_name/db, e.g. /mymaster/0")
    query = parse_qs(parts.query)
    tls_kwargs = _tls(query, tls, ("sentinel_password", "sentinel_username"))
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": common["socket_timeout"]}
    if _one(query, "sentinel_password"):
        sentinel_kwargs["password"] = _one(query, "sentinel_password")
    if _one(query, "sentinel_username"):
        sentinel_kwargs["username"] = _one(query, "sentinel_username")
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **common)  # type: ignore[no-untyped-call]
    master_kwargs: dict[str, Any] = {"db": int(path[1]) if len(path) == 2 else 0, "max_connections": max_connections}
    if username:
        master_kwargs["username"] = username
    if password:
        master_kwargs["password"] = password
    master_kwargs.update(tls_kwargs)
    client = manager.master_for(unquote(path[0]), redis_class=Redis, **master_kwargs)
    return Connection(client, cluster=False, others=list(manager.sentinels))


def _cluster(url: str, tls: bool, common: dict[str, Any], max_connections: int) -> Connection:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    parts = urlsplit(url)
    username, password, hosts = _hosts(parts.netloc, REDIS_PORT)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    kwargs: dict[str, Any] = {**common, "max_connections": max_connections}
    if username:
        kwargs["username"] = username
    if password:
        kwargs["password"] = password
    kwargs.update(_tls(parse_qs(parts.query), tls))
    client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in hosts], **kwargs)
    return Connection(client, cluster=True)

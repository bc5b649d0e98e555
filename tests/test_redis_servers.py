"""The Redis Cluster and Sentinel deployments of tests/redis_servers.py behave as real ones do.

The failover test starts a sentinel set of its own: a failover takes the session set's master
away for a few seconds, which would fail other tests' clients in the meantime.
"""

from __future__ import annotations

import time
import uuid

import anyio.to_thread
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ClusterCrossSlotError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .redis_servers import RedisClusterServers, RedisSentinelSet, command

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

FAILOVER_ERRORS = (RedisConnectionError, RedisTimeoutError)  # MasterNotFoundError is a ConnectionError


async def set_retrying(client: Redis, key: str, value: str, seconds: float = 5.0) -> list[BaseException]:
    """SET, retried on connection errors for up to ``seconds``; the errors seen."""
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds
    while True:
        try:
            await client.set(key, value)
            return errors
        except FAILOVER_ERRORS as exc:
            errors.append(exc)
            assert time.monotonic() < deadline, errors


async def test_cluster_spreads_keys_over_three_masters(redis_cluster: RedisClusterServers) -> None:
    assert redis_cluster.url == f"redis://127.0.0.1:{redis_cluster.ports[0]}/0"
    assert redis_cluster.startup_nodes == [f"127.0.0.1:{port}" for port in redis_cluster.ports]
    prefix = uuid.uuid4().hex[:8]
    rc = RedisCluster.from_url(redis_cluster.url)
    try:
        await rc.initialize()  # the slot map: get_node_from_key needs it
        assert sorted(node.port for node in rc.get_primaries()) == sorted(redis_cluster.ports)
        keys = [f"{prefix}:k{i}" for i in range(30)]
        for key in keys:
            await rc.set(key, key.upper())
        assert [await rc.get(key) for key in keys] == [key.upper().encode() for key in keys]
        owners = {rc.get_node_from_key(key).port for key in keys}  # type: ignore[union-attr]
        assert owners == set(redis_cluster.ports)
        for key in keys:  # each key is on the node the client routed it to, and only there
            slot = command(redis_cluster.ports[0], "CLUSTER", "KEYSLOT", key)
            assert slot == rc.keyslot(key)
            counts = [command(port, "CLUSTER", "COUNTKEYSINSLOT", slot) for port in redis_cluster.ports]
            assert counts.count(1) == 1 and counts.count(0) == len(counts) - 1
    finally:
        await rc.aclose()


async def test_cluster_refuses_cross_slot_multi_key_commands(redis_cluster: RedisClusterServers) -> None:
    prefix = uuid.uuid4().hex[:8]
    a, b = f"{prefix}:a", f"{prefix}:b"
    rc = RedisCluster.from_url(redis_cluster.url)
    try:
        await rc.initialize()
        assert rc.keyslot(a) != rc.keyslot(b)
        # redis-py refuses before sending (a RedisClusterException, not a ResponseError) ...
        with pytest.raises(RedisClusterException, match="same key slot"):
            await rc.mget(a, b)
        # ... and the server itself answers CROSSSLOT when asked anyway.
        with pytest.raises(ClusterCrossSlotError):
            await rc.execute_command("MGET", a, b, target_nodes=rc.get_node_from_key(a))
        # Keys sharing a hash tag share a slot: multi-key commands and scripts work.
        ta, tb = f"{{{prefix}}}:a", f"{{{prefix}}}:b"
        assert rc.keyslot(ta) == rc.keyslot(tb)
        assert await rc.mset({ta: "1", tb: "2"})
        assert await rc.mget(ta, tb) == [b"1", b"2"]
        assert await rc.eval("return redis.call('GET', KEYS[2])", 2, ta, tb) == b"2"
    finally:
        await rc.aclose()


async def test_cluster_flushall_empties_every_master(redis_cluster: RedisClusterServers) -> None:
    rc = RedisCluster.from_url(redis_cluster.url)
    try:
        for i in range(20):
            await rc.set(f"flush:{i}", "x")
        redis_cluster.flushall()
        assert [command(port, "DBSIZE") for port in redis_cluster.ports] == [0, 0, 0]
    finally:
        await rc.aclose()


async def test_sentinel_master_for_reads_and_writes(redis_sentinel: RedisSentinelSet) -> None:
    ports = [port for _, port in redis_sentinel.sentinels]
    assert redis_sentinel.url == "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/mymaster/0"
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=1)
    master = sentinel.master_for(redis_sentinel.service, socket_timeout=1)
    replica = sentinel.slave_for(redis_sentinel.service, socket_timeout=1)
    try:
        host, port = await sentinel.discover_master(redis_sentinel.service)
        assert (host, port) == ("127.0.0.1", redis_sentinel.master_port())
        key = f"s:{uuid.uuid4().hex}"
        await master.set(key, "v")
        assert await master.get(key) == b"v"
        assert await master.execute_command("WAIT", 1, 2000) == 1  # on the replica too
        assert await replica.get(key) == b"v"
    finally:
        await master.aclose()
        await replica.aclose()
        for client in sentinel.sentinels:
            await client.aclose()


async def test_sentinel_failover_to_the_replica(redis_sentinel: RedisSentinelSet) -> None:
    own = RedisSentinelSet(redis_sentinel.server_binary, redis_sentinel.sentinel_binary)
    await anyio.to_thread.run_sync(own.start)
    sentinel = Sentinel(own.sentinels, socket_timeout=0.5)
    master = sentinel.master_for(own.service, socket_timeout=0.5)
    fresh = None
    try:
        await master.set("before", "1")
        assert await master.execute_command("WAIT", 1, 2000) == 1
        old = own.kill_master()
        assert own.role(old) is None
        # Until the sentinels promote the replica, the client fails: ConnectionError, then
        # MasterNotFoundError (a ConnectionError) once the master is seen down; TimeoutError
        # if the master hangs rather than dies.
        with pytest.raises(FAILOVER_ERRORS):
            await master.set("during", "1")
        new = await anyio.to_thread.run_sync(own.wait_for_failover, old)
        assert new != old and own.master_port() == new and own.role(new) == "master"

        fresh = sentinel.master_for(own.service, socket_timeout=0.5)  # a new client: at once
        await fresh.set("after", "fresh")
        assert await fresh.get("before") == b"1"  # replicated before the failover

        # The same client recovers by itself: it asks the sentinels for the master whenever it
        # (re)connects. At most one more error (a pooled connection to the dead node).
        errors = await set_retrying(master, "after", "same")
        assert len(errors) <= 1, errors
        assert command(new, "GET", "after") == "same"

        # The killed node comes back as a replica of the new master; a second failover works.
        assert await anyio.to_thread.run_sync(own.restart_killed) == [old]
        assert own.role(old) == "slave"
        assert await master.execute_command("WAIT", 1, 2000) == 1
        assert command(old, "GET", "after") == "same"
        assert await anyio.to_thread.run_sync(own.wait_for_failover, own.kill_master()) == old
        assert len(await set_retrying(master, "again", "1")) <= 1
    finally:
        own.stop()
        await master.aclose()
        if fresh is not None:
            await fresh.aclose()
        for client in sentinel.sentinels:
            await client.aclose()

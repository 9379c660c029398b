"""One request at a time per gateway, across threads, processes and machines.

With METERPAY_REDIS_URL set, a gateway's bus is a Redis key taken with ``SET NX PX`` and a
random token, released only by its holder (compare-and-delete in Lua), and expiring on its own
if the holder dies. Without Redis, a threading lock per gateway serves one process (the demo).
Different gateways never wait for each other.
"""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
import weakref
from contextlib import asynccontextmanager

from hardware.errors import CommError

LEASE_SECONDS = 30.0
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class BusBusy(CommError):
    """Another worker held the gateway's bus for longer than we could wait."""


_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()
# one asyncio Redis client per event loop (its connections belong to that loop); forgotten with it
_redis_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, object]] = weakref.WeakKeyDictionary()


def _local(key: str) -> threading.Lock:
    with _local_guard:
        return _local_locks.setdefault(key, threading.Lock())


def _redis_url() -> str | None:
    from core.config import get_settings
    return get_settings().redis_url


POOL_SIZE = 32  # Redis connections per event loop; a lock command holds one for one round trip


def _redis(url: str):
    """The loop's client. Its pool is bounded and *waits* for a free connection: a poll shard takes
    the locks of hundreds of gateways at once, and redis-py's default pool raises "Too many
    connections" past 100 instead of waiting."""
    per_loop = _redis_clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(url)
    if client is None:
        from redis.asyncio import BlockingConnectionPool, Redis
        pool = BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=30)
        client = per_loop[url] = Redis(connection_pool=pool)
    return client


def gateway_key(url: str) -> str:
    return url.strip().lower()


@asynccontextmanager
async def bus_lock(gateway_url: str, wait: float = 60.0):
    """Hold the gateway's bus for the body; waits up to ``wait`` seconds, then raises BusBusy."""
    key = gateway_key(gateway_url)
    url = _redis_url()
    deadline = time.monotonic() + wait
    pause = 0.002
    if url:
        client = _redis(url)
        name, token = f"meterpay:bus:{key}", uuid.uuid4().hex
        while not await client.set(name, token, nx=True, px=int(LEASE_SECONDS * 1000)):
            if time.monotonic() > deadline:
                raise BusBusy(f"gateway {gateway_url} stayed busy for {wait:g}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            await client.eval(_RELEASE, 1, name, token)
        return
    lock = _local(key)
    while not lock.acquire(blocking=False):
        if time.monotonic() > deadline:
            raise BusBusy(f"gateway {gateway_url} stayed busy for {wait:g}s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
    try:
        yield
    finally:
        lock.release()

"""One request at a time per gateway, across threads, processes and machines.

With METERPAY_REDIS_URL set, a gateway's bus is a Redis key taken with ``SET NX PX`` and a
random token, released only by its holder (compare-and-delete in Lua), and expiring on its own
if the holder dies. Without Redis, a threading lock per gateway serves one process (the demo).
Different gateways never wait for each other.

Priority: a batch task's commands take the bus with ``low=True``. A normal taker (a single
command, a poll round) that finds the bus busy marks itself waiting (a counter per gateway, in
Redis beside the lock, or in the process); a low taker never takes a bus someone is waiting for.
So a manager's single command waits for at most the one batch exchange on the wire, never for the
batch's queue.
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
# take the bus only when no normal taker waits for it (KEYS[2]: the waiting counter)
_TAKE_LOW = """
if tonumber(redis.call('get', KEYS[2]) or '0') > 0 then return 0 end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class BusBusy(CommError):
    """Another worker held the gateway's bus for longer than we could wait."""


_local_locks: dict[str, threading.Lock] = {}
_local_waiting: dict[str, int] = {}
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


def _local_wait(key: str, delta: int) -> None:
    with _local_guard:
        _local_waiting[key] = _local_waiting.get(key, 0) + delta


def _local_free_for_low(key: str) -> bool:
    with _local_guard:
        return _local_waiting.get(key, 0) <= 0


@asynccontextmanager
async def bus_lock(gateway_url: str, wait: float = 60.0, *, low: bool = False):
    """Hold the gateway's bus for the body; waits up to ``wait`` seconds, then raises BusBusy.
    ``low``: a batch command's turn, given up to any normal taker waiting (see the module)."""
    key = gateway_key(gateway_url)
    url = _redis_url()
    deadline = time.monotonic() + wait
    pause = 0.002
    waiting = False
    if url:
        client = _redis(url)
        name, token = f"meterpay:bus:{key}", uuid.uuid4().hex
        want = f"meterpay:buswant:{key}"
        try:
            while True:
                if low:
                    got = await client.eval(_TAKE_LOW, 2, name, want, token, int(LEASE_SECONDS * 1000))
                else:
                    got = await client.set(name, token, nx=True, px=int(LEASE_SECONDS * 1000))
                if got:
                    break
                if not low and not waiting:
                    waiting = True
                    await client.incr(want)
                    await client.pexpire(want, int(wait * 1000) + 1000)
                if time.monotonic() > deadline:
                    raise BusBusy(f"gateway {gateway_url} stayed busy for {wait:g}s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02 if low else 0.05)
        finally:
            if waiting:
                await client.decr(want)
        try:
            yield
        finally:
            await client.eval(_RELEASE, 1, name, token)
        return
    lock = _local(key)
    try:
        while not ((low is False or _local_free_for_low(key)) and lock.acquire(blocking=False)):
            if not low and not waiting:
                waiting = True
                _local_wait(key, 1)
            if time.monotonic() > deadline:
                raise BusBusy(f"gateway {gateway_url} stayed busy for {wait:g}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02 if low else 0.05)
    finally:
        if waiting:
            _local_wait(key, -1)
    try:
        yield
    finally:
        lock.release()

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
_redis_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = weakref.WeakKeyDictionary()


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


async def _script(url: str, text: str, keys: list[str], args: list) -> object:
    """Run a Lua script by its SHA (EVALSHA; loaded on first use, again if Redis forgot it): a batch
    lane runs one a command, and EVAL would send and hash the whole script every time."""
    client = _redis(url)
    per_loop = _redis_clients[asyncio.get_running_loop()]
    script = per_loop.get((url, text))
    if script is None:
        script = per_loop[(url, text)] = client.register_script(text)
    return await script(keys=keys, args=args, client=client)


def gateway_key(url: str) -> str:
    return url.strip().lower()


def _local_wait(key: str, delta: int) -> None:
    with _local_guard:
        _local_waiting[key] = _local_waiting.get(key, 0) + delta


_local_low_waiting_n: dict[str, int] = {}


def _local_low_wait(key: str, delta: int) -> None:
    with _local_guard:
        _local_low_waiting_n[key] = _local_low_waiting_n.get(key, 0) + delta


def _local_low_waiting(key: str) -> bool:
    with _local_guard:
        return _local_low_waiting_n.get(key, 0) > 0


def _local_free_for_low(key: str) -> bool:
    with _local_guard:
        return _local_waiting.get(key, 0) <= 0


async def _take_waiting(attempt, mark, unmark, *, deadline: float, pause: float, pause_max: float,
                        what: str, wait: float) -> None:
    """Try ``attempt()`` until it succeeds, pausing with backoff (from ``pause`` up to ``pause_max``);
    while it fails, count this taker as waiting once (``mark``; ``unmark`` when done, whatever the
    outcome; either may be None). BusBusy after ``deadline``. Every taker of a bus waits this way."""
    waiting = False
    try:
        while not await attempt():
            if mark is not None and not waiting:
                waiting = True
                await mark()
            if time.monotonic() > deadline:
                raise BusBusy(f"gateway {what} stayed busy for {wait:g}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, pause_max)
    finally:
        if waiting:
            await unmark()


def _redis_counter(client, key: str, wait: float):
    """(mark, unmark) of a Redis waiting counter, expiring a second after the wait could end."""
    async def mark():
        await client.incr(key)
        await client.pexpire(key, int(wait * 1000) + 1000)

    async def unmark():
        await client.decr(key)
    return mark, unmark


def _local_counter(count, key: str):
    """(mark, unmark) of an in-process waiting counter (``_local_wait`` or ``_local_low_wait``)."""
    async def mark():
        count(key, 1)

    async def unmark():
        count(key, -1)
    return mark, unmark


@asynccontextmanager
async def bus_lock(gateway_url: str, wait: float = 60.0, *, low: bool = False):
    """Hold the gateway's bus for the body; waits up to ``wait`` seconds, then raises BusBusy.
    ``low``: a batch command's turn, given up to any normal taker waiting (see the module)."""
    key = gateway_key(gateway_url)
    url = _redis_url()
    timing = {"deadline": time.monotonic() + wait, "pause": 0.002, "pause_max": 0.02 if low else 0.05,
              "what": gateway_url, "wait": wait}
    if url:
        client = _redis(url)
        name, token = f"meterpay:bus:{key}", uuid.uuid4().hex
        want = f"meterpay:buswant:{key}"
        lease_ms = int(LEASE_SECONDS * 1000)

        async def attempt():
            if low:
                return await _script(url, _TAKE_LOW, [name, want], [token, lease_ms])
            return await client.set(name, token, nx=True, px=lease_ms)
        # a low taker is not counted: only normal takers make batch lanes give the bus up
        await _take_waiting(attempt, *((None, None) if low else _redis_counter(client, want, wait)), **timing)
        try:
            yield
        finally:
            await _script(url, _RELEASE, [name], [token])
        return
    lock = _local(key)

    async def attempt_local():
        return (low is False or _local_free_for_low(key)) and lock.acquire(blocking=False)
    await _take_waiting(attempt_local, *((None, None) if low else _local_counter(_local_wait, key)), **timing)
    try:
        yield
    finally:
        lock.release()


# keep the bus for the next low command only when no normal taker waits and it is still ours
# ... and, after a streak (ARGV[3] = 1), only when no other low taker waits either (KEYS[3])
_KEEP_LOW = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('get', KEYS[2]) or '0') > 0 then redis.call('del', KEYS[1]) return 0 end
if ARGV[3] == '1' and tonumber(redis.call('get', KEYS[3]) or '0') > 0 then redis.call('del', KEYS[1]) return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
return 1
"""


class LowHold:
    """A batch lane's hold on one gateway's bus across consecutive batch commands.

    Taking and giving the bus back around every command costs two Redis round trips, and a lane
    with more commands queued takes it right back anyway. Instead the lane takes it ``low`` once
    (``take``, exactly as ``bus_lock(low=True)``) and after each command asks to ``keep`` it: one
    round trip that keeps the bus only if nobody normal waits for it (else gives it up, so a single
    command or a poll round waits for at most the one batch command on the wire, as before). The
    lane ``release``s it when its queue runs empty, on any error, and after ``MAX_STREAK`` commands
    in a row when another low taker waits for the bus (it counts itself waiting, as normal takers
    do), then steps aside for ``STEP_ASIDE`` seconds (another batch engine on the same bus gets its
    turn); with nobody else waiting the streak goes on.
    A holder that dies leaves the key to expire after ``LEASE_SECONDS``, as ``bus_lock``.
    """

    MAX_STREAK = 16
    STEP_ASIDE = 0.12   # seconds a lane waits after a streak (a waiting low taker polls every <= 0.1 s)
    LOW_PAUSE_MAX = 0.1

    def __init__(self, gateway_url: str):
        self.gateway_url = gateway_url
        self.key = gateway_key(gateway_url)
        self.redis_url = _redis_url()
        self.token = uuid.uuid4().hex
        self.held = False
        self.streak = 0
        self.step_aside_until = 0.0

    async def take(self, wait: float = 60.0) -> None:
        if self.held:
            self.streak += 1
            return
        if self.step_aside_until > time.monotonic():
            await asyncio.sleep(self.step_aside_until - time.monotonic())
        # Low takers wait for batch commands (each ~0.5 s on the wire) or a poll round: polling the
        # lock faster only burns CPU (the normal takers still poll from 2 ms). A lane counts itself
        # waiting (``buslowwant``), so a lane on a streak steps aside for it.
        timing = {"deadline": time.monotonic() + wait, "pause": 0.005, "pause_max": self.LOW_PAUSE_MAX,
                  "what": self.gateway_url, "wait": wait}
        if self.redis_url:
            url, client = self.redis_url, _redis(self.redis_url)
            keys, args = [f"meterpay:bus:{self.key}", f"meterpay:buswant:{self.key}"], [self.token,
                                                                                      int(LEASE_SECONDS * 1000)]

            async def attempt():
                return await _script(url, _TAKE_LOW, keys, args)
            await _take_waiting(attempt, *_redis_counter(client, f"meterpay:buslowwant:{self.key}", wait), **timing)
        else:
            lock = _local(self.key)

            async def attempt_local():
                return _local_free_for_low(self.key) and lock.acquire(blocking=False)
            await _take_waiting(attempt_local, *_local_counter(_local_low_wait, self.key), **timing)
        self.held, self.streak = True, 1

    async def keep(self) -> bool:
        """After a command, with another queued: keep the bus if nobody normal waits, and after a
        streak if no other low taker waits either."""
        if not self.held:
            return False
        streak_over = self.streak >= self.MAX_STREAK
        if self.redis_url:
            kept = bool(await _script(
                self.redis_url, _KEEP_LOW,
                [f"meterpay:bus:{self.key}", f"meterpay:buswant:{self.key}", f"meterpay:buslowwant:{self.key}"],
                [self.token, int(LEASE_SECONDS * 1000), "1" if streak_over else "0"]))
            if not kept:
                self.held = False
        else:
            kept = _local_free_for_low(self.key) and not (streak_over and _local_low_waiting(self.key))
            if not kept:
                await self.release()
        if not kept and streak_over:  # step aside for longer than a waiting low taker's pause
            self.step_aside_until = time.monotonic() + self.STEP_ASIDE
        if kept and streak_over:
            self.streak = 0
        return kept

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.redis_url:
            await _script(self.redis_url, _RELEASE, [f"meterpay:bus:{self.key}"], [self.token])
        else:
            _local(self.key).release()

    @asynccontextmanager
    async def turn(self, wait: float = 60.0):
        """The bus for one command's exchanges (taken if not held); given up if the body fails."""
        await self.take(wait)
        try:
            yield
        except BaseException:
            await self.release()
            raise

"""A batch lane's hold on a bus (hardware.buslock.LowHold): kept across its commands while nobody
waits, given up to a normal taker after the command on the wire, never shared."""
from __future__ import annotations

import asyncio
import time

import pytest

from hardware.buslock import LowHold, bus_lock


def _scenario() -> tuple[list[str], float]:
    """A lane holds the bus for commands of 0.1 s; 0.15 s in, a single command asks for it."""
    log: list[str] = []

    async def main():
        hold = LowHold("tcp://10.9.0.1:1")
        single_waited = 0.0

        async def lane():
            for i in range(6):
                async with hold.turn():
                    log.append(f"batch{i}")
                    await asyncio.sleep(0.1)
                if not await hold.keep():
                    await hold.release()
            await hold.release()

        async def single():
            nonlocal single_waited
            await asyncio.sleep(0.15)
            t = time.monotonic()
            async with bus_lock("tcp://10.9.0.1:1"):
                single_waited = time.monotonic() - t
                log.append("single")
                await asyncio.sleep(0.05)

        await asyncio.gather(lane(), single())
        return single_waited
    waited = asyncio.run(main())
    return log, waited


def test_a_held_bus_goes_to_a_waiting_single_command_after_the_batch_command_on_the_wire():
    log, waited = _scenario()
    assert log[:2] == ["batch0", "batch1"] and log[2] == "single", log  # right after the command it waited for
    assert len([x for x in log if x.startswith("batch")]) == 6
    assert waited < 0.15


def test_the_same_with_the_bus_in_redis(redis_url):
    log, waited = _scenario()
    assert log[2] == "single", log
    assert waited < 0.15


@pytest.mark.parametrize("redis", [False, True])
def test_two_holds_never_share_a_bus_and_a_streak_ends(redis, request):
    if redis:
        request.getfixturevalue("redis_url")
    spans: list[tuple[float, float, str]] = []

    async def lane(name):
        hold = LowHold("tcp://10.9.0.2:1")
        for _ in range(LowHold.MAX_STREAK + 4):
            async with hold.turn():
                t = time.monotonic()
                await asyncio.sleep(0.005)
                spans.append((t, time.monotonic(), name))
            if not await hold.keep():
                await hold.release()
            await asyncio.sleep(0)
        await hold.release()

    async def main():
        await asyncio.gather(lane("a"), lane("b"))
    asyncio.run(main())
    spans.sort()
    for (_a0, a1, _), (b0, _b1, _) in zip(spans, spans[1:]):
        assert b0 >= a1
    names = [n for *_x, n in spans]
    first_switch = next(i for i, n in enumerate(names) if n != names[0])
    assert first_switch <= LowHold.MAX_STREAK


@pytest.mark.parametrize("redis", [False, True])
def test_a_lone_lane_keeps_the_bus_past_a_streak(redis, request):
    """Nobody else waits: no step aside after MAX_STREAK commands (a batch bus loses no wire time)."""
    if redis:
        request.getfixturevalue("redis_url")
    kept: list[bool] = []

    async def main():
        hold = LowHold("tcp://10.9.0.3:1")
        t0 = time.monotonic()
        for _ in range(2 * LowHold.MAX_STREAK + 2):
            async with hold.turn():
                await asyncio.sleep(0.001)
            kept.append(await hold.keep())
        await hold.release()
        return time.monotonic() - t0
    took = asyncio.run(main())
    assert all(kept)
    assert took < LowHold.STEP_ASIDE + 0.5

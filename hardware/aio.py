"""Running the hardware's asyncio code from synchronous callers (jobs, CLI, services)."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run(coro):
    """``asyncio.run(coro)``, also when this thread already runs an event loop (an async server,
    a test harness): then the coroutine gets a loop of its own in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="meterpay-hw") as pool:
        return pool.submit(asyncio.run, coro).result()


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for a long-running loop of our own (the batch engine's lanes, the meter
    simulator): uvloop's where it is installed (less CPU per frame, socket write and timer), else
    asyncio's. Same behaviour either way."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_fast(coro):
    """``asyncio.run`` on ``new_loop()`` (a process's main loop, e.g. ``meterpay simulate``)."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(coro)

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

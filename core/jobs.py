"""One way to enqueue work: RQ when METERPAY_REDIS_URL is set, in-process otherwise.

    from core.jobs import job

    @job("meters")
    def execute_command(command_id: int) -> None: ...

    execute_command.delay(42)          # RQ queue "meters", or the in-process runner

Jobs are plain functions importable by dotted path (RQ pickles the path, not the function).
Enqueue from inside a transaction with ``enqueue_after_commit(session, ...)`` so a worker never
looks for a row that is not committed yet.

Periodic jobs are declared in one table, ``meterpay.periodic.PERIODIC_JOBS``; see
``run_periodic`` for how duplicates across several schedulers are skipped.
"""
from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core.config import get_settings

log = logging.getLogger(__name__)

QUEUES = ("default", "meters", "billing", "payments", "notify")

_mode_lock = threading.Lock()
_eager = False
_runner: InProcessRunner | None = None


def set_eager(value: bool) -> None:
    """Run jobs synchronously at enqueue time (tests, scripts)."""
    global _eager
    _eager = value


def redis_connection():
    from redis import Redis
    url = get_settings().redis_url
    if not url:
        raise RuntimeError("METERPAY_REDIS_URL is not set")
    return Redis.from_url(url)


def resolve(func: Callable | str) -> Callable:
    if callable(func):
        return func
    module, _, name = func.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), name)


def dotted(func: Callable | str) -> str:
    if isinstance(func, str):
        return func.replace(":", ".")
    return f"{func.__module__}.{func.__qualname__}"


def enqueue(func: Callable | str, *args: Any, queue: str = "default", job_id: str | None = None,
            timeout: int = 600, **kwargs: Any) -> str | None:
    """Run ``func(*args, **kwargs)`` on a worker. Returns the job id (RQ) or None."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    target = getattr(func, "_meterpay_job", None) or func
    if _eager:
        resolve(target)(*args, **kwargs)
        return None
    settings = get_settings()
    if settings.redis_url:
        from rq import Queue
        q = Queue(queue, connection=redis_connection())
        rq_job = q.enqueue(dotted(target), *args, job_id=job_id, job_timeout=timeout, **kwargs)
        return rq_job.id
    in_process_runner().submit(dotted(target), args, kwargs)
    return None


def _enqueue_quietly(func: Callable | str, *args: Any, queue: str, **kwargs: Any) -> None:
    enqueue(func, *args, queue=queue, **kwargs)


def enqueue_after_commit(session, func: Callable | str, *args: Any, queue: str = "default", **kwargs: Any) -> None:
    from core.db import after_commit
    after_commit(session, lambda: _enqueue_quietly(func, *args, queue=queue, **kwargs))


def job(queue: str = "default", timeout: int = 600) -> Callable[[Callable], Callable]:
    """Mark a function as a job: adds ``.delay(*args, **kwargs)`` that enqueues it on ``queue``."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def wrap(fn: Callable) -> Callable:
        fn._meterpay_job = dotted(fn)  # type: ignore[attr-defined]
        fn.delay = functools.partial(enqueue, fn, queue=queue, timeout=timeout)  # type: ignore[attr-defined]
        fn.queue = queue  # type: ignore[attr-defined]
        return fn
    return wrap


# --- in-process runner ------------------------------------------------------------------

class InProcessRunner:
    """A small thread pool for jobs when there is no Redis (the demo, a laptop)."""

    def __init__(self, workers: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meterpay-job")
        self._pending = 0
        self._cv = threading.Condition()

    def submit(self, path: str, args: tuple, kwargs: dict) -> None:
        with self._cv:
            self._pending += 1
        self._pool.submit(self._run, path, args, kwargs)

    def _run(self, path: str, args: tuple, kwargs: dict) -> None:
        try:
            resolve(path)(*args, **kwargs)
        except Exception:
            log.exception("job %s failed", path)
        finally:
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def in_process_runner() -> InProcessRunner:
    global _runner
    with _mode_lock:
        if _runner is None:
            _runner = InProcessRunner()
        return _runner


def wait_idle(timeout: float = 30.0) -> bool:
    """Wait until the in-process runner has nothing to do (tests)."""
    return _runner.wait_idle(timeout) if _runner else True


# --- periodic jobs ----------------------------------------------------------------------

@dataclass(frozen=True)
class PeriodicJob:
    name: str          # stable id
    func: str          # dotted path of a function taking no arguments
    interval: int      # seconds
    queue: str = "default"
    timeout: int = 600


def run_periodic(name: str, func: str, interval: int) -> None:
    """Run one slot of a periodic job once, even when several schedulers enqueued it.

    With Redis, a key per (job, time slot) taken with SET NX decides who runs; without Redis
    there is only one scheduler (the in-process one).
    """
    if get_settings().redis_url:
        slot = int(time.time() // max(interval, 1))
        if not redis_connection().set(f"meterpay:periodic:{name}:{slot}", "1", nx=True, ex=max(interval * 2, 60)):
            log.info("periodic job %s slot %s already ran", name, slot)
            return
    resolve(func)()


class InProcessScheduler(threading.Thread):
    """Runs the periodic job table without Redis: submits each job to the in-process runner."""

    def __init__(self, jobs: list[PeriodicJob], tick: float = 1.0):
        super().__init__(daemon=True, name="meterpay-scheduler")
        self.jobs = jobs
        self.tick = tick
        self._stop = threading.Event()
        self._next = {j.name: time.monotonic() + min(j.interval, 5) for j in jobs}

    def run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for j in self.jobs:
                if now >= self._next[j.name]:
                    self._next[j.name] = now + j.interval
                    in_process_runner().submit("core.jobs.run_periodic", (j.name, j.func, j.interval), {})
            self._stop.wait(self.tick)

    def stop(self) -> None:
        self._stop.set()


def start_rq_cron(jobs: list[PeriodicJob]) -> None:
    """Blocking: RQ's CronScheduler enqueues each periodic job on its queue at its interval."""
    from rq.cron import CronScheduler
    cron = CronScheduler(connection=redis_connection(), name=f"meterpay-cron-{int(time.time())}")
    for j in jobs:
        cron.register(run_periodic, j.queue, args=(j.name, j.func, j.interval), interval=j.interval,
                      job_timeout=j.timeout, name=j.name)
    cron.start()



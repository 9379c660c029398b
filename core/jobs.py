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

Outages. An enqueue after commit that cannot reach Redis never turns into the caller's error: the
commit stands, the failure is logged (once per outage, see ``Outage``) and the work is left to the
periodic sweeps that find it in the database (pending commands: ``hardware.executor.retry_due``;
late payments: ``miniapp_api.jobs.query_pending``; notifications: ``bot.delivery.retry_due``).
RQ jobs carry ``Retry(max=JOB_RETRIES)``: a job that raised, or that a dead worker left behind
(RQ's started-job registry finds it), runs again. Jobs are written to be run twice safely.
``run_cron`` (``meterpay scheduler``) and ``meterpay worker`` ride out Redis outages of any length.

Observations. ``observe(event, **fields)`` tells the process's observers (metrics) what happened
without knowing who listens; it never raises. ``add_observer(fn)`` subscribes.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core.config import get_settings

log = logging.getLogger(__name__)

QUEUES = ("default", "meters", "billing", "payments", "notify", "batch")
JOB_RETRIES = 3              # RQ runs a failed or abandoned job up to this many more times
REDIS_CONNECT_TIMEOUT = 3.0  # seconds: an unreachable Redis is an error quickly, never a hang
REDIS_SOCKET_TIMEOUT = 10.0  # seconds a command may take (web and enqueues; workers block longer)

_mode_lock = threading.Lock()
_eager = False
_runner: InProcessRunner | None = None
_clients: dict[tuple[str, int, bool], Any] = {}
_observers: list[Callable[..., None]] = []


# --- observations and outages -----------------------------------------------------------

def add_observer(fn: Callable[..., None]) -> None:
    """``fn(event, **fields)`` hears every ``observe`` call in this process (metrics subscribe)."""
    if fn not in _observers:
        _observers.append(fn)


def remove_observer(fn: Callable[..., None]) -> None:
    if fn in _observers:
        _observers.remove(fn)


def observe(event: str, **fields: Any) -> None:
    """Tell the observers what happened (``enqueue_failed``, ``poll_gateway``...). Never raises."""
    for fn in list(_observers):
        try:
            fn(event, **fields)
        except Exception:  # an observer must never break the work it watches
            log.exception("observer %s failed on %s", getattr(fn, "__name__", fn), event)


class Outage:
    """Logs a dependency going away once, and its return once, however many calls fail between.

    ``down(exc)`` on every failure, ``up()`` on every success; both are cheap when nothing changes.
    """

    def __init__(self, what: str, logger: logging.Logger | None = None):
        self.what = what
        self.log = logger or log
        self._lock = threading.Lock()
        self.since: float | None = None
        self.failures = 0

    @property
    def is_down(self) -> bool:
        return self.since is not None

    def down(self, exc: BaseException | str) -> bool:
        """Record a failure; returns True when this failure started the outage (and was logged)."""
        with self._lock:
            self.failures += 1
            if self.since is not None:
                return False
            self.since = time.monotonic()
        self.log.error("%s is unreachable: %s (logged once; retrying until it is back)", self.what,
                       exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}")
        observe("outage", what=self.what, state="down")
        return True

    def up(self) -> bool:
        """Record a success; returns True when it ended an outage (and was logged)."""
        if self.since is None:
            return False
        with self._lock:
            if self.since is None:
                return False
            lasted, failures = time.monotonic() - self.since, self.failures
            self.since, self.failures = None, 0
        self.log.warning("%s is back after %.1fs (%d failed attempts meanwhile)", self.what, lasted, failures)
        observe("outage", what=self.what, state="up", seconds=lasted)
        return True


redis_outage = Outage("Redis")


def set_eager(value: bool) -> None:
    """Run jobs synchronously at enqueue time (tests, scripts)."""
    global _eager
    _eager = value


def redis_connection(*, blocking: bool = False):
    """The process's Redis client for METERPAY_REDIS_URL (one pool per URL, rebuilt after a fork).

    Connecting gives up after REDIS_CONNECT_TIMEOUT and a command after REDIS_SOCKET_TIMEOUT, so a
    dead or unreachable Redis is a quick ``redis.exceptions.ConnectionError``/``TimeoutError``,
    never a hung web request. ``blocking=True`` is the worker's client: no command timeout (RQ
    blocks on BLPOP for its own timeout), TCP keepalive and a health check on reuse instead.
    """
    from redis import Redis
    url = get_settings().redis_url
    if not url:
        raise RuntimeError("METERPAY_REDIS_URL is not set")
    key = (url, os.getpid(), blocking)
    client = _clients.get(key)
    if client is None:
        options: dict[str, Any] = {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_keepalive": True,
                                   "health_check_interval": 30}
        if not blocking:
            options["socket_timeout"] = REDIS_SOCKET_TIMEOUT
        client = _clients[key] = Redis.from_url(url, **options)
    return client


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
        from rq import Queue, Retry
        q = Queue(queue, connection=redis_connection())
        rq_job = q.enqueue(dotted(target), *args, job_id=job_id, job_timeout=timeout, retry=Retry(max=JOB_RETRIES),
                           **kwargs)
        redis_outage.up()
        return rq_job.id
    in_process_runner().submit(dotted(target), args, kwargs)
    return None


def _queue_unreachable(exc: BaseException) -> bool:
    """A Redis outage (redis-py's errors, or the socket's): the job waits for the sweeps. redis is
    imported only where a job went to Redis, so a process without Redis never pays its import."""
    if isinstance(exc, OSError):
        return True
    errors = sys.modules.get("redis.exceptions")
    return errors is not None and isinstance(exc, errors.RedisError)


def _enqueue_quietly(func: Callable | str, *args: Any, queue: str, **kwargs: Any) -> bool:
    """Enqueue after a commit. Returns False, and raises nothing, when Redis cannot take the job:
    the transaction is committed already, so the caller's answer ("accepted, queued") stays true
    and the periodic sweeps deliver the work once Redis is back (see the module's docstring)."""
    try:
        enqueue(func, *args, queue=queue, **kwargs)
    except Exception as exc:
        if not _queue_unreachable(exc):
            raise
        first = redis_outage.down(exc)
        name = dotted(getattr(func, "_meterpay_job", None) or func)
        (log.warning if first else log.debug)("job %s%r not queued on %s (Redis unreachable); the periodic "
                                              "sweeps will pick it up", name, args, queue)
        observe("enqueue_failed", queue=queue, func=name)
        return False
    return True


def enqueue_after_commit(session, func: Callable | str, *args: Any, queue: str = "default", **kwargs: Any) -> None:
    """Enqueue ``func`` once ``session`` commits. A Redis outage at that moment is logged, never
    raised: the committed work is found again by its periodic sweep (see the module's docstring)."""
    from core.db import after_commit

    def later() -> None:
        _enqueue_quietly(func, *args, queue=queue, **kwargs)
    after_commit(session, later)


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


def run_periodic(name: str, func: str, interval: int) -> Any:
    """Run one slot of a periodic job once, even when several schedulers enqueued it; returns what
    the job returned (RQ keeps it as the job's result).

    With Redis, a key per (job, time slot) taken with SET NX decides who runs; without Redis
    there is only one scheduler (the in-process one).
    """
    if get_settings().redis_url:
        slot = int(time.time() // max(interval, 1))
        if not redis_connection().set(f"meterpay:periodic:{name}:{slot}", "1", nx=True, ex=max(interval * 2, 60)):
            log.info("periodic job %s slot %s already ran", name, slot)
            return None
    return resolve(func)()


class InProcessScheduler(threading.Thread):
    """Runs the periodic job table without Redis: submits each job to the in-process runner."""

    def __init__(self, jobs: list[PeriodicJob], tick: float = 1.0):
        super().__init__(daemon=True, name="meterpay-scheduler")
        self.jobs = jobs
        self.tick = tick
        self._stop = threading.Event()
        self._next = {j.name: time.monotonic() + min(j.interval, 5) for j in jobs}
        self.last_tick: float | None = None   # time.time() of the last loop (health)

    def run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            self.last_tick = time.time()
            for j in self.jobs:
                if now >= self._next[j.name]:
                    self._next[j.name] = now + j.interval
                    in_process_runner().submit("core.jobs.run_periodic", (j.name, j.func, j.interval), {})
            self._stop.wait(self.tick)

    def stop(self) -> None:
        self._stop.set()


# --- the RQ scheduler (``meterpay scheduler``) -------------------------------------------

SCHEDULER_HEARTBEAT_KEY = "meterpay:heartbeat:scheduler"   # hash: scheduler name -> unix time
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


def backoff_delays(first: float = BACKOFF_FIRST, most: float = BACKOFF_MAX):
    """1, 2, 4 ... ``most`` seconds with +-20% jitter, forever (so restarts do not stampede)."""
    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * 2, most)


def wait_for_redis(stop: threading.Event | None = None, outage: Outage = redis_outage) -> bool:
    """Block until Redis answers PING, with backoff; returns False if ``stop`` was set first."""
    from redis.exceptions import RedisError
    for delay in backoff_delays():
        if stop is not None and stop.is_set():
            return False
        try:
            redis_connection().ping()
        except (RedisError, OSError) as exc:
            outage.down(exc)
        else:
            outage.up()
            return True
        if stop is not None:
            if stop.wait(delay):
                return False
        else:
            time.sleep(delay)
    return False  # pragma: no cover - the generator never ends


def run_cron(jobs: list[PeriodicJob], *, heartbeat: float = 10.0, stop: threading.Event | None = None,
             name: str | None = None) -> None:
    """Blocking: enqueue each periodic job on its queue at its interval with RQ's CronScheduler,
    and ride out Redis outages of any length.

    RQ's own ``CronScheduler.start()`` exits on the first connection error; this loop drives the
    same scheduler (its job registry, ``rq cron`` monitoring and registration), catches connection
    errors, logs the outage once when it starts and once when it ends, and goes on with backoff.
    A job due during the outage is enqueued once when Redis is back (slots are not replayed).
    Every ``heartbeat`` seconds it writes ``SCHEDULER_HEARTBEAT_KEY`` (``/healthz`` reads it).
    SIGTERM/SIGINT (or ``stop``) end it cleanly.
    """
    import signal

    from redis.exceptions import RedisError
    from rq.cron import CronScheduler
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    cron = CronScheduler(connection=redis_connection(), name=name or f"meterpay-cron-{os.getpid()}-{int(time.time())}")
    for j in jobs:
        cron.register(run_periodic, j.queue, args=(j.name, j.func, j.interval), interval=j.interval,
                      job_timeout=j.timeout, name=j.name)
    log.info("scheduler %s: %d periodic jobs, heartbeat every %gs", cron.name, len(jobs), heartbeat)
    registered = False
    delays = None
    while not stop.is_set():
        try:
            if not registered:
                cron.register_birth()
                registered = True
            if cron.enqueue_jobs():
                cron.save()
            cron.heartbeat()
            redis_connection().hset(SCHEDULER_HEARTBEAT_KEY, cron.name, f"{time.time():.3f}")
            redis_outage.up()
            delays = None
            pause = min(cron.calculate_sleep_interval(), heartbeat)
        except (RedisError, OSError) as exc:
            redis_outage.down(exc)
            registered = False
            delays = delays or backoff_delays()
            pause = next(delays)
        stop.wait(max(pause, 0.05))
    try:
        cron.register_death()
        redis_connection().hdel(SCHEDULER_HEARTBEAT_KEY, cron.name)
    except (RedisError, OSError):
        pass
    log.info("scheduler %s stopped", cron.name)

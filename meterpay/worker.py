"""``meterpay worker``: RQ workers that ride out Redis and PostgreSQL outages.

RQ's worker retries a lost connection only while it waits for a job; anywhere else (the
bookkeeping after a job, its heartbeat, registration) a connection error ends ``work()``, and
the process would exit. ``run_worker`` wraps it:

- **Redis goes away**: the worker in hand ends; the outage is logged once (``core.jobs.Outage``);
  Redis is pinged with backoff (1 s doubling to 30 s, jittered) for as long as it takes; when it
  answers, the outage's end is logged once, the job that was running when Redis went away is put
  back on its queue if RQ still has it as started (its work is committed or rolled back as a whole,
  and every job may run twice), and a new worker starts. A job another worker lost (that process
  died) is retried by RQ's started-job registry cleanup, since every job carries ``Retry``.
- **PostgreSQL goes away** (restart, failover): a job that meets a dropped or refused connection
  waits for the database (``SELECT 1`` with backoff, logged once) and runs again from the start,
  for up to METERPAY_JOB_DB_WAIT seconds; then it fails and RQ's ``Retry`` queues it again.
- SIGTERM/SIGINT stop the worker after the running job (RQ's warm shutdown), and end a wait.

Every finished job is reported with ``core.jobs.observe("job_finished", ...)`` (metrics count
jobs by queue and outcome, poll rounds and alarm deliveries from there).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from core import config
from core import jobs as corejobs
from meterpay import settings as _declared  # noqa: F401  (declares METERPAY_JOB_DB_WAIT, METERPAY_RQ_FORK)

log = logging.getLogger("meterpay.worker")

WORKER_TTL = 60          # seconds: a worker that stops heartbeating leaves the registry within ~2 min
MAINTENANCE_INTERVAL = 60  # seconds between RQ's registry cleanups (abandoned jobs are retried then)
db_outage = corejobs.Outage("PostgreSQL", log)


def is_disconnect(exc: BaseException) -> bool:
    """The database went away (refused, dropped, restarting), as opposed to a bad query."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        try:
            import psycopg
            if isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
                return True
        except ImportError:  # pragma: no cover - psycopg is a dependency
            pass
        return type(orig).__name__ in ("OperationalError", "InterfaceError") and "sqlite" not in type(orig).__module__
    return False


def wait_for_database(deadline: float, stop: threading.Event | None = None) -> bool:
    """``SELECT 1`` with backoff until it works (True) or ``deadline`` (time.monotonic) passes."""
    from core.db import get_engine
    for delay in corejobs.backoff_delays():
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            db_outage.down(exc)
        else:
            db_outage.up()
            return True
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            return False
        time.sleep(min(delay, left))
    return False  # pragma: no cover


def run_through_db_outages(fn, *, wait: float | None = None):
    """Call ``fn()``; when it fails because the database went away, wait for the database and call
    it again, for up to ``wait`` seconds (METERPAY_JOB_DB_WAIT) in all. Other errors pass through."""
    wait = config.get("METERPAY_JOB_DB_WAIT") if wait is None else wait
    deadline = time.monotonic() + wait
    while True:
        try:
            result = fn()
        except DBAPIError as exc:
            if not is_disconnect(exc) or time.monotonic() >= deadline:
                raise
            db_outage.down(exc)
            from core.db import get_engine
            get_engine().dispose()  # every pooled connection is dead as well
            if not wait_for_database(deadline):
                raise
            log.info("running the job again now that the database is back")
            continue
        db_outage.up()
        return result


class MeterpayJob(Job):
    """An RQ job that waits out a database outage and runs again (see ``run_through_db_outages``)."""

    def _execute(self) -> Any:
        return run_through_db_outages(super()._execute)


class _Observed:
    """Reports each job's queue, function, outcome and duration through ``core.jobs.observe``."""

    def execute_job(self, job: Job, queue: Queue):  # type: ignore[override]
        self._meterpay_current = (job.id, queue.name)  # kept if Redis breaks off the job (run_worker)
        started = time.monotonic()
        try:
            outcome = super().execute_job(job, queue)  # type: ignore[misc]
            self._meterpay_current = None
            return outcome
        finally:
            _report(job, queue.name, time.monotonic() - started, forked=not isinstance(self, SimpleWorker))


OUTCOMES = {JobStatus.FINISHED: "ok", JobStatus.FAILED: "failed", JobStatus.SCHEDULED: "retried",
            JobStatus.QUEUED: "retried", JobStatus.STOPPED: "stopped", JobStatus.CANCELED: "canceled"}


def _report(job: Job, queue: str, seconds: float, *, forked: bool) -> None:
    try:
        status = job.get_status(refresh=forked)
        result = job.return_value(refresh=forked) if status == JobStatus.FINISHED else None
    except (RedisError, OSError):
        status, result = None, None
    outcome = OUTCOMES.get(status, "lost") if status is not None else "lost"
    corejobs.observe("job_finished", queue=queue, func=job.func_name, args=job.args, outcome=outcome,
                     seconds=seconds, result=result)


class MeterpaySimpleWorker(_Observed, SimpleWorker):
    """Jobs run in the worker process (default: fastest)."""


class MeterpayForkWorker(_Observed, Worker):
    """A child process per job (METERPAY_RQ_FORK=1: isolation)."""

    def main_work_horse(self, job: Job, queue: Queue):
        from meterpay import metrics
        metrics.stop_counting()  # the parent counts the job; a file per child would pile up
        return super().main_work_horse(job, queue)


_quieted = False


def _quiet_rq_connection_noise() -> None:
    """RQ logs every failed reconnect while it waits for a job, and a traceback when Redis breaks
    off its bookkeeping; the outage is logged once by ``core.jobs.redis_outage`` instead."""
    global _quieted
    if _quieted:
        return
    _quieted = True

    class Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if "could not connect to Redis" in str(record.msg):
                exc = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else "connection error"
                corejobs.redis_outage.down(str(exc))
                return False
            exc_info = record.exc_info
            if exc_info and isinstance(exc_info[1], RedisConnectionError | RedisTimeoutError):
                corejobs.redis_outage.down(exc_info[1])
                return False
            return True
    for name in ("rq.worker", "rq.worker.base"):
        logging.getLogger(name).addFilter(Filter())


def _requeue_interrupted(job_id: str, queue_name: str) -> None:
    """Put back a job this process was running when Redis went away, if RQ still has it started."""
    conn = corejobs.redis_connection(blocking=True)
    try:
        job = MeterpayJob.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) != JobStatus.STARTED:
        return
    # Its entry in the started-job registry is dropped by RQ's cleanup once the job is no longer STARTED.
    Queue(queue_name, connection=conn).enqueue_job(job)
    log.warning("job %s (%s) was interrupted by the Redis outage: queued again on %s", job.id, job.func_name,
                queue_name)


def run_worker(queues: list[str], *, burst: bool = False, stop: threading.Event | None = None,
               name: str | None = None, handle_signals: bool = True) -> None:
    """Work ``queues`` until SIGTERM/SIGINT (or ``stop``), through Redis and database outages;
    ``burst``: until the queues are empty."""
    stop = stop or threading.Event()
    _quiet_rq_connection_noise()
    fork = config.get("METERPAY_RQ_FORK")
    cls = MeterpayForkWorker if fork else MeterpaySimpleWorker
    if handle_signals and threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame):
            stop.set()
            if current is not None:
                current.request_stop(signum, frame)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
    current: Any = None
    generation = 0
    while not stop.is_set():
        if not corejobs.wait_for_redis(stop):
            break
        generation += 1
        conn = corejobs.redis_connection(blocking=True)
        current = cls([Queue(q, connection=conn) for q in queues], connection=conn, job_class=MeterpayJob,
                      worker_ttl=WORKER_TTL, maintenance_interval=MAINTENANCE_INTERVAL,
                      name=f"{name}-{generation}" if name else None)
        current._install_signal_handlers = lambda: None  # ours (above) forward to request_stop
        current._meterpay_current = None
        try:
            current.work(burst=burst, with_scheduler=False, logging_level=logging.getLevelName(
                logging.getLogger().getEffectiveLevel()))
            clean = not corejobs.redis_outage.is_down
        except (RedisError, OSError) as exc:  # teardown (register_death) needs Redis too
            corejobs.redis_outage.down(exc)
            clean = False
        interrupted = current._meterpay_current
        if clean and (burst or stop.is_set() or current._stop_requested):
            break
        if not clean or _redis_down():
            if not corejobs.wait_for_redis(stop):
                break
            if interrupted:
                try:
                    _requeue_interrupted(*interrupted)
                except (RedisError, OSError) as exc:
                    corejobs.redis_outage.down(exc)
        elif not stop.is_set():
            log.error("worker %s stopped on its own (see above); starting a new one", current.name)
            time.sleep(1)
    log.info("worker stopped")


def _redis_down() -> bool:
    try:
        corejobs.redis_connection(blocking=True).ping()
    except (RedisError, OSError) as exc:
        corejobs.redis_outage.down(exc)
        return True
    return False

"""Prometheus metrics: ``GET /metrics`` (``prometheus_client``'s text format).

What is counted, and where it is measured (existing seams only: no hardware or payment code
knows about Prometheus):

- requests: ``meterpay_http_requests_total`` (route, method, status) and
  ``meterpay_http_request_seconds`` (route, method), from Flask's before/after request;
- jobs: ``meterpay_jobs_total`` (queue, job, outcome: ok, failed, retried, lost...) and
  ``meterpay_job_seconds``, from the RQ worker (``meterpay.worker``);
- polling: ``meterpay_poll_rounds_total``, ``meterpay_poll_round_seconds`` and
  ``meterpay_poll_meters_total`` (ok, failed) from the poll jobs' results;
  ``meterpay_poll_gateway_reads_total`` (gateway, outcome) and ``meterpay_poll_gateway_seconds_total``
  from ``core.jobs.observe("poll_gateway", gateway=, meters=, failed=, seconds=)``;
- commands: ``meterpay_commands_total`` and ``meterpay_command_seconds`` (kind, final state;
  seconds from request to final state), from the ``command_finished`` signal;
- payments: ``meterpay_payments_total`` and ``meterpay_payment_fen_total`` (channel, outcome), from
  the ``payment_settled`` signal (outcome paid) and ``observe("payment", channel=, outcome=, amount_fen=)``;
- alarms: ``meterpay_alarms_total`` (channel, kind, outcome: sent, retrying, failed), from the
  ``bot.delivery.deliver`` jobs;
- outages: ``meterpay_enqueue_failures_total`` (queue) and ``meterpay_outages_total`` (what), from core.jobs;
- read at scrape time from ``meterpay.health.collect`` and the gateways table: ``meterpay_health_ok``
  (check), ``meterpay_queue_depth`` and ``meterpay_queue_workers`` (queue),
  ``meterpay_scheduler_heartbeat_age_seconds``, ``meterpay_commands_pending``,
  ``meterpay_command_overdue_seconds``, ``meterpay_poll_age_seconds`` (site), ``meterpay_gateway_up``
  and ``meterpay_gateway_failing_meters`` (gateway).

**Several processes.** gunicorn's workers, the RQ workers and the scheduler are separate
processes; ``prometheus_client``'s multiprocess mode adds them up. Set METERPAY_METRICS_DIR (or
PROMETHEUS_MULTIPROC_DIR) to a directory all of them on one machine can write (``/run/meterpay/
metrics``); each process keeps its files in a subdirectory of its own (``web`` for gunicorn,
``worker-<pid>``, ``scheduler-<pid>``), which ``configure`` points PROMETHEUS_MULTIPROC_DIR at
before anything is counted. gunicorn empties ``web`` when it starts and marks a gunicorn
worker's live gauges dead when it exits (``meterpay/gunicorn_conf.py``); an RQ worker or scheduler
removes its directory when it exits, and one that died without doing so is removed by the next
process that starts (a restarted process's counters start again from zero, which Prometheus's
``rate()`` reads as a counter reset). ``/metrics`` on any web process merges every file under
the directory. Without the directory, ``/metrics`` shows its own process only (``meterpay run``).

With METERPAY_RQ_FORK=1 the counts made inside a job's child process (commands, payments) are not
kept (a file per child would pile up); jobs, polls and alarms are counted by the parent.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from core import config
from core import jobs as corejobs
from meterpay import settings as _declared  # noqa: F401  (declares METERPAY_METRICS_DIR)

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.01, 0.05, 0.25, 1, 5, 15, 60, 180, 600, 1800)
COMMAND_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 3600, 4 * 3600, 24 * 3600)
POLL_JOBS = ("hardware.poller.poll_due", "hardware.poller.poll_gateways", "hardware.poller.poll")
DELIVER_JOB = "bot.delivery.deliver"

_base: Path | None = None      # the multiprocess directory (all processes' subdirectories)
_own_dir: Path | None = None   # this process's subdirectory
_owner_pid: int | None = None  # the process that configured it
_configured = False
_stopped = False               # a forked job child (METERPAY_RQ_FORK=1) counts nothing
_m: SimpleNamespace | None = None
_installed = False


def base_dir() -> Path | None:
    return _base


def _configured_base() -> Path | None:
    path = config.get("METERPAY_METRICS_DIR")
    if path:
        return Path(path)
    env = os.environ.get("PROMETHEUS_MULTIPROC_BASE") or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(env) if env else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_dirs(base: Path) -> None:
    for d in base.glob("*-*"):
        role, _, pid = d.name.rpartition("-")
        if d.is_dir() and pid.isdigit() and role in ("worker", "scheduler", "run") and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def configure(role: str, *, fresh: bool = False) -> Path | None:
    """Choose this process's metrics files (call before anything is counted; idempotent).

    ``role``: web (gunicorn: one shared subdirectory; ``fresh`` empties it: the gunicorn master
    at start), worker, scheduler or run (one subdirectory per process). Returns the directory, or
    None in single-process mode.
    """
    global _base, _own_dir, _owner_pid, _configured
    if _configured:  # here, or in the parent this process was forked from (gunicorn's master)
        return _own_dir
    _configured = True
    base = _configured_base()
    _owner_pid = os.getpid()
    if base is None:
        return None
    if "prometheus_client" in sys.modules and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        log.warning("prometheus_client was imported before metrics.configure(); counting for this process only")
        return None
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead_dirs(base)
    own = base / ("web" if role == "web" else f"{role}-{os.getpid()}")
    if fresh and own.exists():
        shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_BASE"] = str(base)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)
    _base, _own_dir = base, own
    return own


def process_exit() -> None:
    """A worker or scheduler leaving: remove its files (see the module's docstring)."""
    if _own_dir is not None and _own_dir.name != "web" and _owner_pid == os.getpid():
        shutil.rmtree(_own_dir, ignore_errors=True)


def web_worker_exit(pid: int) -> None:
    """gunicorn's child_exit: drop a dead web worker's live gauges (its counters stay, summed)."""
    if _own_dir is not None and _own_dir.name == "web":
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid, str(_own_dir))


def stop_counting() -> None:
    """In a forked job child: count nothing (see the module's docstring)."""
    global _stopped
    _stopped = True


_m_lock = threading.Lock()


def m() -> SimpleNamespace:
    """The metric objects, made on first use (after ``configure``), once: the first requests of a web
    worker's threads arrive together, and a second registration of a metric raises (a 500 then)."""
    global _m
    if _m is not None:
        return _m
    with _m_lock:
        if _m is not None:
            return _m
        configure("run")  # no-op when the process (or its parent) configured already
        from prometheus_client import Counter, Histogram
        _m = SimpleNamespace(
            requests=Counter("meterpay_http_requests_total", "HTTP requests", ["route", "method", "status"]),
            request_seconds=Histogram("meterpay_http_request_seconds", "HTTP request latency", ["route", "method"],
                                      buckets=LATENCY_BUCKETS),
            jobs=Counter("meterpay_jobs_total", "RQ jobs finished", ["queue", "job", "outcome"]),
            job_seconds=Histogram("meterpay_job_seconds", "RQ job run time", ["queue", "job"], buckets=JOB_BUCKETS),
            poll_rounds=Counter("meterpay_poll_rounds_total", "poll rounds (or shards of one) finished", ["outcome"]),
            poll_round_seconds=Histogram("meterpay_poll_round_seconds", "poll round (or shard) duration",
                                         buckets=JOB_BUCKETS),
            poll_meters=Counter("meterpay_poll_meters_total", "meter reads in poll rounds", ["outcome"]),
            gateway_reads=Counter("meterpay_poll_gateway_reads_total", "meter reads per gateway",
                                  ["gateway", "outcome"]),
            gateway_seconds=Counter("meterpay_poll_gateway_seconds_total", "seconds spent reading each gateway",
                                    ["gateway"]),
            commands=Counter("meterpay_commands_total", "meter commands finished", ["kind", "state"]),
            command_seconds=Histogram("meterpay_command_seconds", "meter command, requested to final state",
                                      ["kind", "state"], buckets=COMMAND_BUCKETS),
            payments=Counter("meterpay_payments_total", "payments by outcome", ["channel", "outcome"]),
            payment_fen=Counter("meterpay_payment_fen_total", "money in payments by outcome (fen)",
                                ["channel", "outcome"]),
            alarms=Counter("meterpay_alarms_total", "notifications (alarms) delivered", ["channel", "kind", "outcome"]),
            enqueue_failures=Counter("meterpay_enqueue_failures_total",
                                     "jobs not queued after commit (left to the sweeps)", ["queue"]),
            outages=Counter("meterpay_outages_total", "outages of a dependency seen by a process", ["what"]),
        )
    return _m


def _counting() -> bool:
    """False in a forked job child (METERPAY_RQ_FORK=1): see the module's docstring."""
    return not _stopped


# --- observations ---------------------------------------------------------------------------------

def _on_observation(event: str, **f: Any) -> None:
    if not _counting():
        return
    mm = m()
    if event == "job_finished":
        _job_finished(mm, **f)
    elif event == "enqueue_failed":
        mm.enqueue_failures.labels(f.get("queue", "?")).inc()
    elif event == "outage" and f.get("state") == "down":
        mm.outages.labels(f.get("what", "?")).inc()
    elif event == "poll_gateway":
        gw = str(f.get("gateway", "?"))
        failed = int(f.get("failed", 0))
        mm.gateway_reads.labels(gw, "ok").inc(max(int(f.get("meters", 0)) - failed, 0))
        if failed:
            mm.gateway_reads.labels(gw, "failed").inc(failed)
        mm.gateway_seconds.labels(gw).inc(float(f.get("seconds", 0.0)))
    elif event == "payment":
        channel, outcome = str(f.get("channel", "?")), str(f.get("outcome", "?"))
        mm.payments.labels(channel, outcome).inc()
        if f.get("amount_fen"):
            mm.payment_fen.labels(channel, outcome).inc(int(f["amount_fen"]))


def _job_finished(mm: SimpleNamespace, *, queue: str, func: str, args: tuple, outcome: str, seconds: float,
                  result: Any = None, **_: Any) -> None:
    name = func
    if func == "core.jobs.run_periodic" and args:
        name = f"periodic:{args[0]}"
        func = str(args[1]) if len(args) > 1 else func
    mm.jobs.labels(queue, name, outcome).inc()
    mm.job_seconds.labels(queue, name).observe(seconds)
    if func in POLL_JOBS:
        if isinstance(result, dict) and "meters" in result:
            mm.poll_rounds.labels(outcome).inc()
            mm.poll_round_seconds.observe(float(result.get("seconds", seconds)))
            mm.poll_meters.labels("ok").inc(int(result.get("ok", 0)))
            mm.poll_meters.labels("failed").inc(int(result.get("failed", 0)))
        elif outcome != "ok":
            mm.poll_rounds.labels(outcome).inc()
    elif func == DELIVER_JOB and args:
        _alarm(mm, args[0], result if outcome == "ok" else "error")


def _alarm(mm: SimpleNamespace, notification_id: Any, status: Any) -> None:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from core.db import session_scope
    from core.models import Notification
    try:
        with session_scope() as s:
            row = s.execute(select(Notification.channel, Notification.kind)
                            .where(Notification.id == int(notification_id))).one_or_none()
    except (SQLAlchemyError, ValueError, TypeError):
        row = None
    channel, kind = row if row else ("?", "?")
    mm.alarms.labels(channel, kind, str(status)).inc()


def _on_command_finished(command_id: int, state: str, kind: str | None = None, requested_at=None,
                         finished_at=None, **_: Any) -> None:
    """Counts a finished command. The event names only the command; its kind and times are read
    with one query unless the event carries them (``kind``, ``requested_at``, ``finished_at``)."""
    if not _counting():
        return
    if kind is None:
        from sqlalchemy import select

        from core.db import session_scope
        from core.models import MeterCommand
        with session_scope() as s:
            row = s.execute(select(MeterCommand.kind, MeterCommand.created_at, MeterCommand.finished_at)
                            .where(MeterCommand.id == command_id)).one_or_none()
        if row is None:
            return
        kind, requested_at, finished_at = row
    mm = m()
    mm.commands.labels(kind, state).inc()
    if requested_at is not None:
        end = finished_at or datetime.now(UTC)
        mm.command_seconds.labels(kind, state).observe(max((end - requested_at).total_seconds(), 0.0))


def _on_payment_settled(order_id: int, channel: str | None = None, amount_fen: int | None = None, **_: Any) -> None:
    """A paid order: counted from the signal's payload (``core.payments.orders.settle`` gives the
    channel and amount); read from its row only when a sender gave the id alone."""
    if not _counting():
        return
    if channel is not None and amount_fen is not None:
        _on_observation("payment", channel=channel, outcome="paid", amount_fen=amount_fen)
        return
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import PaymentOrder
    with session_scope() as s:
        row = s.execute(select(PaymentOrder.channel, PaymentOrder.amount_fen)
                        .where(PaymentOrder.id == order_id)).one_or_none()
    if row is not None:
        _on_observation("payment", channel=row[0], outcome="paid", amount_fen=row[1])


def install() -> None:
    """Listen to the seams (observations and domain signals). Idempotent; no-op if already done."""
    global _installed
    if _installed:
        return
    _installed = True
    from core import signals
    corejobs.add_observer(_on_observation)
    signals.on("command_finished")(_on_command_finished)
    signals.on("payment_settled")(_on_payment_settled)


# --- the web side ---------------------------------------------------------------------------------

def init_app(app) -> None:
    """Request latency by route, and ``GET /metrics``."""
    from flask import Response, g, request

    install()

    @app.before_request
    def _start_timer():
        g._metrics_started = time.perf_counter()

    @app.after_request
    def _count(response):
        started = g.pop("_metrics_started", None)
        if started is not None and _counting():
            rule = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
            mm = m()
            mm.requests.labels(rule, request.method, str(response.status_code)).inc()
            mm.request_seconds.labels(rule, request.method).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics_endpoint():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})


class _MergedFiles:
    """Every process's files under the base directory, added up (prometheus_client's merge)."""

    def __init__(self, base: Path):
        self.base = base

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector
        files = [str(p) for p in self.base.glob("*/*.db")]
        return MultiProcessCollector.merge(files, accumulate=True)


class _Health:
    """Gauges read at scrape time: the health checks and the gateways' state."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from meterpay import health
        body = health.collect()
        ok = GaugeMetricFamily("meterpay_health_ok", "1 when the health check passes", labels=["check"])
        for key, value in body.items():
            if isinstance(value, dict) and "status" in value:
                ok.add_metric([key], 1.0 if value["status"] == "ok" else 0.0)
        yield ok
        queued = body.get("queue", {}).get("queued")
        if queued:
            g = GaugeMetricFamily("meterpay_queue_depth", "jobs waiting per queue", labels=["queue"])
            for q, n in queued.items():
                g.add_metric([q], n)
            yield g
        per_queue = body.get("workers", {}).get("per_queue")
        if per_queue:
            g = GaugeMetricFamily("meterpay_queue_workers", "live RQ workers per queue", labels=["queue"])
            for q, n in per_queue.items():
                g.add_metric([q], n)
            yield g
        age = body.get("scheduler", {}).get("heartbeat_age_s")
        if age is not None:
            yield GaugeMetricFamily("meterpay_scheduler_heartbeat_age_seconds", "age of the newest scheduler "
                                    "heartbeat", value=age)
        cmds = body.get("commands", {})
        if "pending" in cmds:
            yield GaugeMetricFamily("meterpay_commands_pending", "pending meter commands", value=cmds["pending"])
            yield GaugeMetricFamily("meterpay_command_overdue_seconds", "how far the most overdue pending command "
                                    "is past its attempt time", value=cmds.get("most_overdue_s") or 0.0)
        sites = body.get("polling", {}).get("sites")
        if sites:
            g = GaugeMetricFamily("meterpay_poll_age_seconds", "age of the last completed poll round per site",
                                  labels=["site"])
            for name, info in sites.items():
                if info.get("last_round_age_s") is not None:
                    g.add_metric([name], info["last_round_age_s"])
            yield g
        yield from _gateways()


def _gateways():
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import case, func, select
    from sqlalchemy.exc import SQLAlchemyError

    from core.db import session_scope
    from core.models import Gateway, Meter
    try:
        with session_scope() as s:
            rows = s.execute(
                select(Gateway.name, Gateway.online,
                       func.count(Meter.id), func.coalesce(func.sum(case((Meter.consecutive_failures > 0, 1),
                                                                          else_=0)), 0))
                .outerjoin(Meter, (Meter.gateway_id == Gateway.id) & (Meter.status == "active"))
                .group_by(Gateway.id, Gateway.name, Gateway.online)).all()
    except (SQLAlchemyError, OSError):
        return
    up = GaugeMetricFamily("meterpay_gateway_up", "1 when the gateway answered in its last poll round",
                           labels=["gateway"])
    failing = GaugeMetricFamily("meterpay_gateway_failing_meters", "meters behind the gateway whose last read "
                                "failed", labels=["gateway"])
    for name, online, _meters, bad in rows:
        up.add_metric([name], 1.0 if online else 0.0)
        failing.add_metric([name], float(bad))
    yield up
    yield failing


def registry():
    """The registry ``/metrics`` shows: every process's files (multiprocess) or this process's
    metrics, plus the scrape-time gauges."""
    from prometheus_client import REGISTRY, CollectorRegistry
    m()
    reg = CollectorRegistry(auto_describe=False)
    if _base is not None:
        reg.register(_MergedFiles(_base))
    else:
        class _Default:
            def collect(self):
                return REGISTRY.collect()
        reg.register(_Default())
    reg.register(_Health())
    return reg

"""GET /healthz and ``meterpay status``: is the whole system doing its job, with a 503 when not.

``collect()`` checks, each on its own (one failing check never hides the others):

| key | ok when |
|---|---|
| ``database`` | ``SELECT 1`` answers |
| ``redis`` | Redis answers PING (with METERPAY_REDIS_URL) |
| ``queue`` | every queue holds at most METERPAY_HEALTH_QUEUE_MAX jobs (``queued``: depth per queue) |
| ``workers`` | every queue has at least one live RQ worker (``per_queue``) |
| ``scheduler`` | a ``meterpay scheduler`` heartbeat is younger than two METERPAY_SCHEDULER_HEARTBEAT intervals |
| ``commands`` | no pending meter command is more than METERPAY_HEALTH_COMMAND_LAG seconds past its attempt time |
| ``polling`` | every site with gateways had a completed poll round in which a gateway answered, \
within two of the site's poll intervals (plus a minute) |

Without Redis (``meterpay run`` alone: in-process jobs) ``redis``, ``workers`` and ``scheduler``
say ``backend: in-process`` and pass. The answer is JSON: ``status`` (ok/error) and one object
per check with its own ``status``; HTTP 200 when every check is ok, else 503. It costs a few
indexed queries and one Redis round trip per kind (pipelined), so a load balancer or a monitor may
call it every few seconds.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Blueprint, jsonify
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from core import config
from core.config import get_settings
from core.db import get_engine, session_scope
from meterpay import settings as _declared  # noqa: F401  (declares the METERPAY_HEALTH_* variables)

bp = Blueprint("health", __name__)

POLL_SLACK_S = 60


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")


def _age(ts: datetime | None, now: datetime) -> float | None:
    return None if ts is None else round(max((now - ts).total_seconds(), 0.0), 1)


def check_database() -> dict:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "dialect": get_engine().dialect.name}
    except (SQLAlchemyError, OSError) as exc:
        return {"status": "error", "error": _error(exc)}


def check_commands(now: datetime) -> dict:
    from core.models import MeterCommand
    lag_max = config.get("METERPAY_HEALTH_COMMAND_LAG")
    try:
        with session_scope() as s:
            count, oldest, due = s.execute(
                select(func.count(), func.min(MeterCommand.created_at), func.min(MeterCommand.next_attempt_at))
                .where(MeterCommand.state == "pending")).one()
    except (SQLAlchemyError, OSError) as exc:
        return {"status": "error", "error": _error(exc)}
    overdue = _age(due, now) if due is not None and due < now else 0.0
    out = {"status": "ok", "pending": count, "oldest_pending_age_s": _age(oldest, now),
           "most_overdue_s": overdue, "max_overdue_s": lag_max}
    if count and overdue is not None and overdue > lag_max:
        out["status"] = "error"
        out["error"] = (f"a pending command is {overdue:.0f}s past its attempt time "
                        "(the workers or the scheduler are not keeping up)")
    return out


def check_polling(now: datetime) -> dict:
    """The age of the last completed poll round per site with gateways: a round stores, for each
    gateway that answered, ``last_seen_at``; a site whose newest is older than two poll intervals
    (plus a minute) is late, and so is one whose gateways never answered."""
    from core.models import Gateway, Site
    from hardware import settings as hw
    try:
        with session_scope() as s:
            rows = s.execute(select(Gateway.site_id, func.max(Gateway.last_seen_at), func.count())
                             .group_by(Gateway.site_id)).all()
            sites = {site.id: site for site in s.scalars(select(Site).where(Site.id.in_([r[0] for r in rows])))} \
                if rows else {}
            out: dict = {"status": "ok", "sites": {}, "late": []}
            for site_id, last, gateways in rows:
                site = sites.get(site_id)
                raw = ((site.settings or {}) if site else {}).get("poll_interval_minutes", hw.default_poll_minutes())
                try:
                    interval = max(1, int(raw)) * 60
                except (TypeError, ValueError):
                    interval = hw.default_poll_minutes() * 60
                age = _age(last, now)
                late = age is None or age > 2 * interval + POLL_SLACK_S
                name = site.name if site else str(site_id)
                out["sites"][name] = {"site_id": site_id, "last_round_age_s": age, "interval_s": interval,
                                      "gateways": gateways, "late": late}
                if late:
                    out["late"].append(name)
    except (SQLAlchemyError, OSError) as exc:
        return {"status": "error", "error": _error(exc)}
    if out["late"]:
        out["status"] = "error"
        out["error"] = f"polling is late at {', '.join(sorted(out['late']))}"
    return out


def live_workers(conn, queue: str) -> int:
    """Workers registered for ``queue`` whose RQ key is still alive (it expires when they stop beating)."""
    from rq import Queue
    from rq.worker_registration import get_keys
    keys = sorted(get_keys(queue=Queue(queue, connection=conn)))
    if not keys:
        return 0
    with conn.pipeline() as pipe:
        for k in keys:
            pipe.exists(k)
        return sum(1 for alive in pipe.execute() if alive)


def check_redis(body: dict, now_ts: float) -> None:
    from core.jobs import QUEUES, SCHEDULER_HEARTBEAT_KEY, redis_connection
    queue_max = config.get("METERPAY_HEALTH_QUEUE_MAX")
    beat = config.get("METERPAY_SCHEDULER_HEARTBEAT")
    try:
        conn = redis_connection()
        conn.ping()
        body["redis"] = {"status": "ok"}
        from rq import Queue
        with conn.pipeline() as pipe:
            for q in QUEUES:
                pipe.llen(Queue(q, connection=conn).key)
            pipe.hgetall(SCHEDULER_HEARTBEAT_KEY)
            *depths, beats = pipe.execute()
        queued = dict(zip(QUEUES, depths))
        body["queue"] = {"status": "ok", "backend": "rq", "queued": queued, "max": queue_max}
        full = [q for q, n in queued.items() if n > queue_max]
        if full:
            body["queue"].update(status="error", error=f"queue(s) over {queue_max} jobs: {', '.join(full)}")
        workers = {q: live_workers(conn, q) for q in QUEUES}
        body["workers"] = {"status": "ok", "per_queue": workers}
        idle = [q for q, n in workers.items() if n == 0]
        if idle:
            body["workers"].update(status="error", error=f"no live worker for queue(s) {', '.join(idle)}")
        last = max((float(v) for v in beats.values()), default=None)
        age = None if last is None else round(max(now_ts - last, 0.0), 1)
        body["scheduler"] = {"status": "ok", "heartbeat_age_s": age, "stale_after_s": 2 * beat,
                             "schedulers": sum(1 for v in beats.values() if now_ts - float(v) <= 2 * beat)}
        if age is None or age > 2 * beat:
            body["scheduler"].update(status="error", error="no scheduler heartbeat" if age is None else
                                     f"the last scheduler heartbeat is {age:.0f}s old")
    except (RedisError, OSError) as exc:
        err = {"status": "error", "error": _error(exc)}
        body["redis"] = dict(err)
        body["queue"] = {**err, "backend": "rq"}
        body.setdefault("workers", dict(err))
        body.setdefault("scheduler", dict(err))


def collect() -> dict:
    """Every check; ``status`` is ok only when each check is."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    body: dict = {"status": "ok", "time": now.isoformat(timespec="seconds")}
    body["database"] = check_database()
    if get_settings().redis_url:
        check_redis(body, now.timestamp())
    else:
        for key in ("redis", "queue", "workers", "scheduler"):
            body[key] = {"status": "ok", "backend": "in-process"}
    if body["database"]["status"] == "ok":
        body["commands"] = check_commands(now)
        body["polling"] = check_polling(now)
    else:
        body["commands"] = {"status": "error", "error": "database unreachable"}
        body["polling"] = {"status": "error", "error": "database unreachable"}
    failing = [k for k, v in body.items() if isinstance(v, dict) and v.get("status") != "ok"]
    if failing:
        body["status"] = "error"
        body["failing"] = failing
    body["checked_in_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return body


@bp.get("/healthz")
def healthz():
    body = collect()
    resp = jsonify(body)
    resp.status_code = 200 if body["status"] == "ok" else 503
    resp.headers["Cache-Control"] = "no-store"
    return resp

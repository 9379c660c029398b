"""The processes' settings (serve, worker, sandbox), and the list of every area that declares some.

``load_all()`` imports each area's settings module, so the registry (``core.config``) knows every
variable: ``meterpay config check|list`` and the README table use it.
"""
from __future__ import annotations

import importlib

from core import config
from core.config import Var

AREA_MODULES = ("core.config", "core.batch.settings", "hardware.settings", "miniapp_api.settings", "bot.settings",
                "admin.settings", "meterpay.settings")

config.declare(
    "web",
    Var("METERPAY_HOST", "str", "127.0.0.1", "bind address for `serve` and `run` (`0.0.0.0` behind a proxy)"),
    Var("METERPAY_WEB_WORKERS", "int", "2", "gunicorn worker processes for `serve`", minimum=1),
    Var("METERPAY_WEB_THREADS", "int", "4",
        "threads per gunicorn worker (raise it if slow payment-provider calls tie threads up)", minimum=1),
    Var("METERPAY_WEB_SWITCH_INTERVAL_MS", "float", "1",
        "each `serve` worker's GIL switch interval in milliseconds (Python's default 5; shorter cuts the latency "
        "tail; outside 0-100 the default)"),
    Var("METERPAY_WEB_WORKER_CLASS", "choice", "gthread", "gunicorn worker class for `serve`",
        choices=("gthread", "sync")),
    Var("METERPAY_WEB_KEEPALIVE", "int", "15", "seconds an idle keep-alive connection stays open", minimum=0),
    Var("METERPAY_ACCESS_LOG", "bool", "0", "`1`: gunicorn writes an access log line per request"),
    Var("METERPAY_RQ_FORK", "bool", "0",
        "`1`: RQ forks a child per job (isolation); default: jobs run in the worker process (speed)"),
    Var("METERPAY_SANDBOX_PORT", "int", "5055", "port of `meterpay sandbox` under `make run`", minimum=1),
    Var("METERPAY_PROXY_HOPS", "int", "0",
        "proxies in front of the web (nginx: `1`): the client address, scheme and host are taken from that many "
        "`X-Forwarded-*` hops (werkzeug's ProxyFix); `0` trusts none", minimum=0),
    Var("METERPAY_LOG_FORMAT", "choice", "text",
        "`json`: one JSON object per log line (time, level, logger, message, process, exception) for a log "
        "collector; `text`: plain lines", choices=("text", "json")),
    Var("METERPAY_JOB_DB_WAIT", "int", "600",
        "seconds a job that lost its database connection waits for PostgreSQL and runs again before it fails "
        "(then RQ retries it)", minimum=0),
    Var("METERPAY_SCHEDULER_HEARTBEAT", "int", "10",
        "seconds between `meterpay scheduler` heartbeats; `/healthz` calls the scheduler stale after two",
        minimum=1),
    Var("METERPAY_HEALTH_QUEUE_MAX", "int", "5000",
        "`/healthz` says 503 when a queue holds more jobs than this", minimum=1),
    Var("METERPAY_HEALTH_COMMAND_LAG", "int", "300",
        "`/healthz` says 503 when a pending meter command is this many seconds past its attempt time", minimum=1),
    Var("METERPAY_METRICS_DIR", "path", None,
        "directory for `prometheus_client`'s multiprocess files (gunicorn workers, RQ workers and the scheduler on "
        "one machine share it; `PROMETHEUS_MULTIPROC_DIR` is used when this is unset); unset and without it, "
        "`/metrics` shows the serving process only", default_doc="`$PROMETHEUS_MULTIPROC_DIR`"),
)


def load_all() -> None:
    """Import every area's settings module (each declares its variables on import)."""
    for name in AREA_MODULES:
        importlib.import_module(name)

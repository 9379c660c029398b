"""gunicorn settings for ``meterpay serve`` (``gunicorn -c python:meterpay.gunicorn_conf``).

Read from the environment when gunicorn starts; ``meterpay serve`` passes bind, workers and
threads on the command line (they win over this file). Documented in docs/miniapp.md.

| variable | default | meaning |
|---|---|---|
| METERPAY_WEB_THREADS | 4 | threads per worker (gthread) |
| METERPAY_WEB_SWITCH_INTERVAL_MS | 1 | each worker's GIL switch interval in ms (Python's default: 5) |
| METERPAY_WEB_WORKER_CLASS | gthread | gunicorn worker class (sync, gthread) |
| METERPAY_WEB_KEEPALIVE | 15 | seconds an idle keep-alive connection stays open |
| METERPAY_ACCESS_LOG | 0 | 1: one access line per request on stdout (off: it costs CPU on every request) |
"""
from __future__ import annotations

import os
import sys

DEFAULT_THREADS = "4"
DEFAULT_SWITCH_INTERVAL_MS = 1.0


def _switch_interval_ms() -> float:
    raw = os.environ.get("METERPAY_WEB_SWITCH_INTERVAL_MS", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_SWITCH_INTERVAL_MS
    except ValueError:
        value = DEFAULT_SWITCH_INTERVAL_MS
    return value if 0 < value <= 100 else DEFAULT_SWITCH_INTERVAL_MS


wsgi_app = "meterpay.wsgi:app"
worker_class = os.environ.get("METERPAY_WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("METERPAY_WEB_THREADS", DEFAULT_THREADS))
keepalive = int(os.environ.get("METERPAY_WEB_KEEPALIVE", "15"))
worker_connections = 1000
graceful_timeout = 10
accesslog = "-" if os.environ.get("METERPAY_ACCESS_LOG", "0").lower() in ("1", "true", "yes", "on") else None
errorlog = "-"
switch_interval_ms = _switch_interval_ms()


def post_worker_init(worker) -> None:
    """In a gthread worker every request changes threads twice (the poller hands the socket to a
    pool thread and gets it back), and a thread that wants the GIL waits up to the switch interval
    for the running one to let go. Python's 5 ms stacks up into the tail; 1 ms measured better
    (docs/miniapp.md)."""
    sys.setswitchinterval(switch_interval_ms / 1000)

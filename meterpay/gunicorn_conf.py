"""gunicorn settings for ``meterpay serve`` (``gunicorn -c python:meterpay.gunicorn_conf``).

Read from the settings registry when gunicorn starts (the variables are declared in
``meterpay/settings.py``); ``meterpay serve`` passes bind, workers and threads on the command line
(they win over this file).
"""
from __future__ import annotations

import sys

from core import config as _config
from meterpay import settings as _declared  # noqa: F401  (declares METERPAY_WEB_*)

DEFAULT_THREADS = "4"
DEFAULT_SWITCH_INTERVAL_MS = 1.0


def _switch_interval_ms() -> float:
    """A malformed or out-of-range interval falls back to the default: gunicorn still starts
    (``meterpay config check`` reports the malformed value)."""
    try:
        value = _config.get("METERPAY_WEB_SWITCH_INTERVAL_MS")
    except _config.ConfigError:
        return DEFAULT_SWITCH_INTERVAL_MS
    return value if 0 < value <= 100 else DEFAULT_SWITCH_INTERVAL_MS


wsgi_app = "meterpay.wsgi:app"
worker_class = _config.get("METERPAY_WEB_WORKER_CLASS")
threads = _config.get("METERPAY_WEB_THREADS")
keepalive = _config.get("METERPAY_WEB_KEEPALIVE")
worker_connections = 1000
graceful_timeout = 10
accesslog = "-" if _config.get("METERPAY_ACCESS_LOG") else None
errorlog = "-"
switch_interval_ms = _switch_interval_ms()


GC_REFREEZE_AFTER = 2000  # requests: by then the lazily imported modules (WeChat, Pay, usage) are loaded


def post_worker_init(worker) -> None:
    """In a gthread worker every request changes threads twice (the poller hands the socket to a
    pool thread and gets it back), and a thread that wants the GIL waits up to the switch interval
    for the running one to let go. Python's 5 ms stacks up into the tail; 1 ms measured better
    (docs/miniapp.md).

    The app's long-lived objects (modules, mappers, schemas: ~160,000 once loaded) are moved out
    of the garbage collector's sight (``gc.freeze``) once loaded, and again after the first
    ``GC_REFREEZE_AFTER`` requests: a full collection scanned all of them, 160-180 ms during which
    every thread of the worker stood still (``bench load``'s tail); it now scans what requests made.
    Frozen objects are never freed, which is what they are for: they live as long as the worker."""
    import gc
    sys.setswitchinterval(switch_interval_ms / 1000)
    gc.collect()
    gc.freeze()


def on_starting(server) -> None:
    """In the master, before any worker: the web's metrics files start empty (``meterpay.metrics``),
    and with METERPAY_LOG_FORMAT=json gunicorn's own log lines are JSON too."""
    from meterpay import logs, metrics
    metrics.configure("web", fresh=True)
    if _config.get("METERPAY_LOG_FORMAT") == "json":
        import logging
        for name in ("gunicorn.error", "gunicorn.access"):
            for handler in logging.getLogger(name).handlers:
                handler.setFormatter(logs.JsonFormatter())


def child_exit(server, worker) -> None:
    """A web worker ended (crash, restart): drop its live gauges; its counters stay in the sums."""
    from meterpay import metrics
    metrics.web_worker_exit(worker.pid)


_served = 0  # requests this worker process served (until the second freeze)


def post_request(worker, req, environ, resp) -> None:
    """See ``post_worker_init``: freeze once more what the first requests loaded (modules imported
    on first use), without a collection (a full one here would stall the worker once more)."""
    global _served
    if _served < GC_REFREEZE_AFTER:
        _served += 1
        if _served == GC_REFREEZE_AFTER:
            import gc
            gc.freeze()

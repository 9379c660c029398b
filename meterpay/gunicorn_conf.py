"""gunicorn settings for ``meterpay serve`` (``gunicorn -c python:meterpay.gunicorn_conf``).

Read from the environment when gunicorn starts; ``meterpay serve`` passes bind, workers and
threads on the command line (they win over this file). Documented in docs/miniapp.md.

| variable | default | meaning |
|---|---|---|
| METERPAY_WEB_THREADS | 8 | threads per worker (gthread) |
| METERPAY_WEB_WORKER_CLASS | gthread | gunicorn worker class (sync, gthread) |
| METERPAY_WEB_KEEPALIVE | 15 | seconds an idle keep-alive connection stays open |
| METERPAY_ACCESS_LOG | 0 | 1: one access line per request on stdout (off: it costs CPU on every request) |
"""
from __future__ import annotations

import os

DEFAULT_THREADS = "8"

wsgi_app = "meterpay.wsgi:app"
worker_class = os.environ.get("METERPAY_WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("METERPAY_WEB_THREADS", DEFAULT_THREADS))
keepalive = int(os.environ.get("METERPAY_WEB_KEEPALIVE", "15"))
worker_connections = 1000
graceful_timeout = 10
accesslog = "-" if os.environ.get("METERPAY_ACCESS_LOG", "0").lower() in ("1", "true", "yes", "on") else None
errorlog = "-"


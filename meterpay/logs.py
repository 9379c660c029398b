"""Logging for every process: plain text lines, or one JSON object per line with
``METERPAY_LOG_FORMAT=json`` (for journald/Loki/ELK collectors).

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``process`` (the
process's role: web, worker, scheduler, cli), ``pid``, and ``exception`` (the formatted traceback)
when there is one; anything passed as ``extra={...}`` is added as its own key. During a web
request, ``request_id``, ``method`` and ``path`` are added.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from core import config
from meterpay import settings as _declared  # noqa: F401  (declares METERPAY_LOG_FORMAT)

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process_role)s %(process)d] %(name)s: %(message)s"
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "process_role"}
_role = "cli"


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.process_role = _role
        try:
            from flask import g, has_request_context, request
            if has_request_context():
                record.request_id = getattr(g, "request_id", None)
                record.method, record.path = request.method, request.path
        except ImportError:  # pragma: no cover - flask is a dependency
            pass
        return True


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": getattr(record, "process_role", _role),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_") and value is not None:
                out[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def configure(role: str, level: str | None = None, *, force: bool = False) -> None:
    """Set up the root logger for this process (``role``: web, worker, scheduler, cli). Idempotent:
    called again it replaces its own handler, never adds a second one. When something else already
    handles the root logger (a test runner's capture), it is left alone unless ``force``."""
    global _role
    _role = role
    try:
        fmt = config.get("METERPAY_LOG_FORMAT")
    except config.ConfigError:
        fmt = "text"
    level = level or config.get_settings().log_level
    root = logging.getLogger()
    foreign = [h for h in root.handlers if not getattr(h, "_meterpay", False) and type(h) is not logging.StreamHandler]
    if foreign and not force:
        return
    for h in [h for h in root.handlers if getattr(h, "_meterpay", False)]:
        root.removeHandler(h)
    handler = _Stderr()
    handler._meterpay = True  # type: ignore[attr-defined]
    handler.addFilter(_RoleFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    # basicConfig's default handler goes (ours replaces it)
    for h in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # RQ adds its own handlers to "rq.worker" only when no ancestor has one: ours serves it too.

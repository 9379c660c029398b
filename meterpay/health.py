"""GET /healthz: database and queue status as JSON; 503 when the database is unreachable."""
from __future__ import annotations

from flask import Blueprint, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from core.config import get_settings
from core.db import get_engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    settings = get_settings()
    body: dict = {"status": "ok"}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        body["database"] = {"status": "ok", "dialect": get_engine().dialect.name}
    except (SQLAlchemyError, OSError) as exc:
        body["database"] = {"status": "error", "error": type(exc).__name__}
        body["status"] = "error"
    if settings.redis_url:
        try:
            from core.jobs import QUEUES, redis_connection
            conn = redis_connection()
            conn.ping()
            from rq import Queue
            body["queue"] = {"status": "ok", "backend": "rq",
                             "queued": {q: Queue(q, connection=conn).count for q in QUEUES}}
        except (RedisError, OSError) as exc:
            body["queue"] = {"status": "error", "backend": "rq", "error": type(exc).__name__}
            body["status"] = "error"
    else:
        body["queue"] = {"status": "ok", "backend": "in-process"}
    return jsonify(body), (200 if body["status"] == "ok" else 503)

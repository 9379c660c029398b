"""Jobs the outage tests enqueue (importable by dotted path, as RQ needs)."""
from __future__ import annotations

import time
from pathlib import Path


def mark(path: str, tag: str) -> str:
    with Path(path).open("a") as f:
        f.write(f"{tag}\n")
    return tag


def slow_mark(path: str, tag: str, seconds: float) -> str:
    """Writes "start <tag>", works ``seconds``, writes "done <tag>" (an outage can fall in between)."""
    mark(path, f"start {tag}")
    time.sleep(seconds)
    mark(path, f"done {tag}")
    return tag


def db_write(tag: str) -> str:
    """One row in ``outage_probe`` (the PostgreSQL outage test's table), in its own transaction."""
    from sqlalchemy import text

    from core.db import session_scope
    with session_scope() as s:
        s.execute(text("INSERT INTO outage_probe (tag) VALUES (:t)"), {"t": tag})
    return tag

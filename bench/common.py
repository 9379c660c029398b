"""What every benchmark shares: a scratch database beside the configured one."""
from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable


def scratch_database(url: str, prefix: str = "bench") -> tuple[str, Callable[[], None]]:
    """A fresh database beside ``url`` (PostgreSQL: a new database; SQLite: a temp file) and a
    function that drops it. Benchmarks never touch the configured database's data."""
    import sqlalchemy as sa
    if not url.startswith("postgresql"):
        path = os.path.join(tempfile.mkdtemp(prefix=f"mp-{prefix}-"), "bench.db")
        return f"sqlite:///{path}", lambda: os.path.exists(path) and os.remove(path)
    u = sa.engine.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"mp_{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        from core.db import reset_engine
        reset_engine()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return u.set(database=name).render_as_string(hide_password=False), drop


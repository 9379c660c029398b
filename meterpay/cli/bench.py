"""``meterpay bench ...``: benchmarks. Each area adds a subcommand in meterpay/cli/bench_<area>.py."""
from __future__ import annotations

import os
import tempfile
import uuid
from typing import Callable

from meterpay.cli.base import cli


@cli.group()
def bench() -> None:
    """Benchmarks; each reports a ratio against a baseline measured in the same run."""


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


def one_room_account(session, *, site: str, floor: str, room: str, tenant: str, serial: str,
                     balance_fen: int, phone: str = ""):
    """A site with one building (A), one floor and one room, and an open account there."""
    from core.sites.accounts import MeterSpec, OpenAccountRequest, open_account
    from core.models import Building, Floor, Room, Site
    site_row = Site(name=site, settings={})
    session.add(site_row)
    session.flush()
    building = Building(site_id=site_row.id, name="A")
    session.add(building)
    session.flush()
    floor_row = Floor(building_id=building.id, name=floor)
    session.add(floor_row)
    session.flush()
    room_row = Room(site_id=site_row.id, floor_id=floor_row.id, number=room)
    session.add(room_row)
    session.flush()
    return open_account(session, OpenAccountRequest(room_id=room_row.id, tenant_name=tenant, tenant_phone=phone,
                                                    meters=(MeterSpec(serial=serial),),
                                                    opening_balance_fen=balance_fen))

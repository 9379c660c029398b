"""The migrations build exactly the schema the models describe, and move data without guessing."""
import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import core.models  # noqa: F401
from core.db import Base, get_engine
from core.migrate import current_heads


def test_migrations_match_models():
    with get_engine().connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations disagree; add an Alembic revision: {diff}"


def test_history_has_one_head():
    heads = current_heads()
    assert len(heads) == 1, f"several migration heads {heads}: add a merge revision"


# --- 0004: one plan per utility, plans per site -------------------------------------------------

def _insert(conn, table_name: str, /, **values) -> int:
    import sqlalchemy as sa

    from core.db import UTCDateTime
    types = {"created_at": UTCDateTime(), "opened_at": UTCDateTime(), "installed_at": UTCDateTime(),
             "settings": sa.JSON(), "notify_channels": sa.JSON(), "live": sa.JSON(), "spec": sa.JSON(),
             "effective_from": sa.Date(), "keep_power": sa.Boolean(), "online": sa.Boolean()}
    table = sa.table(table_name, sa.column("id"), *[sa.column(k, types.get(k)) for k in values])
    return conn.execute(table.insert().values(**values).returning(table.c.id)).scalar_one()


def _seed_0001(url: str) -> dict:
    """At 0001: one kWh plan, used by an account with an electricity and a water meter at site 1
    and by an account at site 2 (so it was shared, and water was priced per "kWh")."""
    from datetime import UTC, date, datetime

    import sqlalchemy as sa
    now = datetime(2026, 7, 1, tzinfo=UTC)
    engine = sa.create_engine(url)
    ids: dict = {}
    with engine.begin() as conn:
        plan = _insert(conn, "tariff_plans", name="商业电价", kind="flat", unit="kWh", created_at=now)
        for eff, price in ((date(2000, 1, 1), "1.0"), (date(2026, 1, 1), "1.1")):
            _insert(conn, "tariff_versions", plan_id=plan, effective_from=eff, created_at=now,
                    spec={"kind": "flat", "unit": "kWh", "price": price})
        for n in (1, 2):
            site = _insert(conn, "sites", name=f"site {n}", timezone="Asia/Shanghai", settings={}, created_at=now)
            building = _insert(conn, "buildings", site_id=site, name="A")
            floor = _insert(conn, "floors", building_id=building, name="1")
            room = _insert(conn, "rooms", site_id=site, floor_id=floor, number=f"10{n}")
            tenant = _insert(conn, "tenants", site_id=site, name=f"t{n}", phone="", notify_channels=[],
                             created_at=now)
            account = _insert(conn, "accounts", site_id=site, room_id=room, tenant_id=tenant, status="open",
                              billing_mode="prepaid-platform", tariff_plan_id=plan, keep_power=False, opened_at=now)
            for kind in ("electricity", "water") if n == 1 else ("electricity",):
                ids[(n, kind)] = _insert(
                    conn, "meters", serial=f"{kind[0].upper()}{n}", site_id=site, room_id=room, account_id=account,
                    kind=kind, profile="p", address="1", ct_ratio=1, status="active", online=False,
                    consecutive_failures=0, relay_state="unknown", valve_state="unknown", keep_power=False, live={},
                    installed_at=now)
            ids[n] = (site, account)
        ids["plan"] = plan
    engine.dispose()
    return ids


def _check_0004(url: str, tmp_path) -> None:
    import os
    import subprocess
    import sys

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from core.migrate import upgrade
    from core.models import Account, MeterEvent, TariffPlan
    from core.tariffs.store import versions
    upgrade(url, "0001")
    ids = _seed_0001(url)
    upgrade(url, "heads")
    engine = sa.create_engine(url)
    with Session(engine) as s:
        (site1, acct1), (site2, acct2) = ids[1], ids[2]
        a1, a2 = s.get(Account, acct1), s.get(Account, acct2)
        template = s.get(TariffPlan, ids["plan"])
        assert template.site_id is None  # used at two sites: stays a template, each site has a copy
        assert a1.electricity_plan.site_id == site1 and a2.electricity_plan.site_id == site2
        assert a1.electricity_plan.name == a2.electricity_plan.name == "商业电价"
        assert a1.water_plan_id is None and a2.water_plan_id is None  # no water plan guessed
        same = [(v.effective_from, v.spec) for v in versions(s, template.id)]
        assert [(v.effective_from, v.spec) for v in versions(s, a1.electricity_plan_id)] == same
        events = s.scalars(sa.select(MeterEvent).where(MeterEvent.kind == "tariff_unit_mismatch")).all()
        assert [(e.meter_id, e.detail["plan"], e.detail["unit"]) for e in events] == \
            [(ids[(1, "water")], "商业电价", "kWh")]
    engine.dispose()
    env = {**os.environ, "METERPAY_DATABASE_URL": url}
    out = subprocess.run([sys.executable, "-m", "meterpay.cli", "sites", "check", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    listed = json.loads(out.stdout)["unpriced"]
    assert [(m["serial"], m["utility"], m["site"]) for m in listed] == [("W1", "water", "site 1")]
    assert "商业电价" in listed[0]["reason"] and "migration 0004" in listed[0]["reason"]


def test_0004_leaves_wrong_unit_meters_unpriced(tmp_path):
    _check_0004(f"sqlite:///{tmp_path / 'm.db'}", tmp_path)


def test_0004_leaves_wrong_unit_meters_unpriced_on_postgresql(tmp_path, pg_only):
    import uuid

    import sqlalchemy as sa

    from tests.conftest import PG_ADMIN_URL
    name = f"mp_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        _check_0004(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", tmp_path)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

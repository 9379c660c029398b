"""Usage for charts: register differences per day and month, and the cost deducted in each."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

SH = ZoneInfo("Asia/Shanghai")


def test_usage_by_day_and_month_from_readings_and_consumption(factory, session, bound_tenant, pay_env):
    from core.ledger import cashdesk
    from core.models import Meter, Reading
    tenant, account = bound_tenant(balance_fen=100000)
    meter = session.scalar(select(Meter).where(Meter.account_id == account.id))
    readings = {}
    for day, hour, total in [(date(2026, 10, 31), 23, "100.00"), (date(2026, 11, 1), 8, "101.50"),
                             (date(2026, 11, 1), 22, "104.00"), (date(2026, 11, 3), 12, "110.25")]:
        r = Reading(meter_id=meter.id, taken_at=datetime(day.year, day.month, day.day, hour, tzinfo=SH),
                    total=Decimal(total))
        session.add(r)
        session.flush()
        readings[(day.day, hour)] = r.id
    session.commit()
    # usage is dated by the reading that closed its interval (issue 15), not by when it was posted
    for key, fen, reading in [("u1", 200, readings[(1, 22)]), ("u2", 350, readings[(3, 12)])]:
        cashdesk.consume(session, account.id, fen, key=key, meta={"meter_id": meter.id, "reading_id": reading})
    session.commit()

    days = tenant.get(f"/accounts/{account.id}/usage?start=2026-11-01&end=2026-11-03").json()["points"]
    assert [(p["period"], p["usage"], p["cost"]) for p in days] == [
        ("2026-11-01", "4.00", "2.00"), ("2026-11-02", "0.00", "0.00"), ("2026-11-03", "6.25", "3.50")]
    months = tenant.get(f"/accounts/{account.id}/usage?granularity=month&start=2026-10-01&end=2026-11-30").json()
    assert [(p["period"], p["usage"], p["cost_fen"]) for p in months["points"]] == [
        ("2026-10", "0.00", 0), ("2026-11", "10.25", 550)]


def test_water_usage_is_counted_apart_in_cubic_metres(session, bound_tenant, pay_env):
    from core.models import Meter, Reading
    from core.sites.accounts import MeterSpec
    tenant, account = bound_tenant(meters=(MeterSpec(serial="E-USG"), MeterSpec(serial="W-USG", kind="water",
                                                                                profile="cjt188-water")))
    water = session.scalar(select(Meter).where(Meter.serial == "W-USG"))
    for hour, total in [(1, "10.000"), (20, "10.125")]:
        session.add(Reading(meter_id=water.id, taken_at=datetime(2026, 11, 5, hour, tzinfo=SH), total=Decimal(total)))
    session.commit()
    q = "start=2026-11-05&end=2026-11-05"
    assert tenant.get(f"/accounts/{account.id}/usage?{q}&kind=water").json()["points"][0]["usage"] == "0.125"
    assert tenant.get(f"/accounts/{account.id}/usage?{q}").json()["points"][0]["usage"] == "0.00"


def test_usage_by_year_with_spending_per_utility(session, bound_tenant, pay_env):
    from core.billing import ingest
    from core.models import Meter
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    add_plan(session, "usage-flat", {"kind": "flat", "unit": "kWh", "price": "0.5"})
    tenant, account = bound_tenant(balance_fen=100000, tariff="usage-flat",
                                   meters=(MeterSpec(serial="E-SPD"), MeterSpec(serial="W-SPD", kind="water",
                                                                                profile="cjt188-water")))
    elec = session.scalar(select(Meter).where(Meter.serial == "E-SPD"))
    for when, total in [(datetime(2025, 12, 31, 23, tzinfo=SH), "10.00"), (datetime(2026, 1, 1, 0, 30, tzinfo=SH),
                                                                           "14.00"),
                        (datetime(2026, 6, 1, tzinfo=SH), "20.00")]:
        ingest(session, elec.id, when, Decimal(total))
    session.commit()
    q = f"/accounts/{account.id}/usage?by=year&start=2025-01-01&end=2026-12-31"
    body = tenant.get(q).json()
    assert body["granularity"] == "year"
    assert [(p["period"], p["usage"], p["cost"], p["spending"]) for p in body["points"]] == [
        ("2025", "0.00", "0.00", {"electricity": "0.00", "water": "0.00"}),
        ("2026", "10.00", "5.00", {"electricity": "5.00", "water": "0.00"})]
    months = tenant.get(f"/accounts/{account.id}/usage?by=month&start=2026-01-01&end=2026-06-30").json()["points"]
    assert [(p["period"], p["spending_fen"]["electricity"]) for p in months] == [
        ("2026-01", 200), ("2026-02", 0), ("2026-03", 0), ("2026-04", 0), ("2026-05", 0), ("2026-06", 300)]
    assert tenant.get(f"/accounts/{account.id}/usage?by=week&start=2026-01-01&end=2026-06-30").status_code == 400


def test_the_account_and_its_usage_name_each_utilitys_plan_and_price(session, factory, bound_tenant, pay_env):
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"})
    add_plan(session, "商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"})
    session.commit()
    tenant, account = bound_tenant(tariffs={"electricity": "商业电价", "water": "商业水价"},
                                   meters=(MeterSpec(serial="E-T"), MeterSpec(serial="W-T", kind="water",
                                                                               profile="cjt188-water")))
    detail = tenant.get(f"/accounts/{account.id}").json()
    assert detail["tariffs"] == [
        {"utility": "electricity", "plan": "商业电价", "unit": "kWh", "price": "1.0 元/kWh"},
        {"utility": "water", "plan": "商业水价", "unit": "m3", "price": "5.0 元/m³"}]
    water = tenant.get(f"/accounts/{account.id}/usage?start=2026-11-05&end=2026-11-05&kind=water").json()
    assert water["tariff"] == detail["tariffs"][1]


def test_a_utility_without_a_plan_says_so(session, bound_tenant, pay_env):
    from core.sites.accounts import MeterSpec
    tenant, account = bound_tenant(meters=(MeterSpec(serial="W-N", kind="water", profile="cjt188-water"),))
    assert tenant.get(f"/accounts/{account.id}").json()["tariffs"] == [
        {"utility": "water", "plan": None, "unit": "m3", "price": None}]


def test_the_usage_chart_costs_three_or_four_statements_whatever_the_meters(session, bound_tenant, pay_env):
    """The hot path (issue 13 item 8): the account with its time zone, every meter's readings in one
    statement, the spending, the plan with its versions (not on PostgreSQL once cached); no
    BEGIN/ROLLBACK or pool ping around them."""
    import sqlalchemy as sa

    from core.models import Meter, Reading
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    add_plan(session, "usage-count", {"kind": "flat", "unit": "kWh", "price": "0.5"})
    tenant, account = bound_tenant(tariff="usage-count", meters=(MeterSpec(serial="E-CNT1"), MeterSpec(serial="E-CNT2")))
    for serial, totals in (("E-CNT1", ("1.00", "2.00", "4.50")), ("E-CNT2", ("10.00", "10.00", "11.25"))):
        meter = session.scalar(select(Meter).where(Meter.serial == serial))
        for day, total in zip((3, 4, 5), totals, strict=True):
            session.add(Reading(meter_id=meter.id, taken_at=datetime(2026, 11, day, 12, tzinfo=SH), total=Decimal(total)))
    session.commit()
    url = f"/accounts/{account.id}/usage?start=2026-11-04&end=2026-11-05"
    tenant.get(url)  # warm: pools, caches
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        body = tenant.get(url).json()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    # 2.00 - 1.00 + 0.00, then 4.50 - 2.00 + 11.25 - 10.00
    assert [(p["period"], p["usage"]) for p in body["points"]] == [("2026-11-04", "1.00"), ("2026-11-05", "3.75")]
    assert body["tariff"]["plan"] == "usage-count"
    # PostgreSQL: the plan's summary is in this process's balance cache since the warm request
    # (tests/miniapp/test_balance_cache.py: dropped when a plan or version is written)
    assert len(seen) == (3 if session.get_bind().dialect.name == "postgresql" else 4), seen

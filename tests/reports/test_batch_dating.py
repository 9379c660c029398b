"""Readings of many days in one batch (a CSV import, a gateway's backlog) are dated as if they had
come one by one: each local day's usage is billed as its own interval, closed by that day's last
reading, so reports, income and month end see it in the day (and month) it was used."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from core.billing import RawReading, ingest_batch
from core.ledger.check import validate as validate_ledger
from core.models.billing import BilledUsage
from core.reports import energy, finance
from core.reports.check import validate as validate_rollups
from core.sites.accounts import MeterSpec
from core.tariffs.store import add_plan
from tests.reports.conftest import TOU, at, ingest


def _site(session, factory):
    site = factory.site("Batchy")
    add_plan(session, "tou", TOU)
    one = factory.account(room=factory.room(site, "101", building="A", floor="1"), tariff="tou",
                          balance_fen=100_000, meters=(MeterSpec(serial="ONE"),))
    many = factory.account(room=factory.room(site, "102", building="A", floor="1"), tariff="tou",
                           balance_fen=100_000, meters=(MeterSpec(serial="MANY"),))
    return site, one, many


def _series(hours: int):
    """Hourly readings from 2026-04-29 20:00 (Shanghai) over the April/May boundary, 0.5-2 kWh an hour."""
    start, total, out = at("2026-04-29 20:00"), Decimal("100.00"), []
    for h in range(hours):
        out.append((start + timedelta(hours=h), total))
        total += Decimal(50 + (h * 37) % 150) / 100
    return out


def _check_same(session, site, one, many):
    session.commit()
    by_room = {}
    for period in ("2026-04", "2026-05"):
        rows = {r["room"]: r for r in energy.energy(session, site, period).as_json()["rows"]}
        # the same kWh in each period and the same fee; the fee's split over the periods is made per
        # billed interval (largest remainder), so a day's interval may put a fen elsewhere than 24 hourly ones
        skip = ("room", "tenant", "fee_by_period")
        assert {k: v for k, v in rows["101"].items() if k not in skip} == \
               {k: v for k, v in rows["102"].items() if k not in skip}, period
        assert sum(map(Decimal, rows["102"]["fee_by_period"].values())) == Decimal(rows["102"]["fee"])
        by_room[period] = rows["102"]
    assert Decimal(by_room["2026-04"]["total"]) > 0 and Decimal(by_room["2026-05"]["total"]) > 0
    income = finance.income(session, site, at("2026-04-01 00:00").date(), at("2026-05-31 00:00").date(),
                            by="month").as_json()
    # the two shops used the same energy at the same hours: the same income each month, both months
    months = {r["period"]: r["income"]["electricity"] for r in income["rows"]}
    fees = {p: Decimal(by_room[p]["fee"]) * 2 for p in by_room}
    assert {p: Decimal(months[p]) for p in months} == fees
    assert validate_ledger(session) == [] and validate_rollups(session) == []


def _deliver(session, one, many, series):
    m_one, m_many = one.meters[0], many.meters[0]
    for when, total in series:
        ingest(session, m_one, when.strftime("%Y-%m-%d %H:%M"), str(total))
    res = ingest_batch(session, [RawReading(m_many.id, when, total, None, "import") for when, total in series])
    assert res.counts["accepted"] == len(series)


def test_a_few_readings_over_a_month_end_in_one_batch_are_dated_like_one_by_one(session, factory):
    site, one, many = _site(session, factory)
    _deliver(session, one, many, [(at("2026-04-29 07:00"), Decimal("500.00")), (at("2026-04-29 19:00"), Decimal("512.00")),
                                  (at("2026-04-30 23:00"), Decimal("520.00")), (at("2026-05-01 09:00"), Decimal("523.00"))])
    _check_same(session, site, one, many)
    # one billed interval per local day of the closing readings: 04-29, 04-30, 05-01
    ends = session.scalars(select(BilledUsage.ended_at).where(BilledUsage.meter_id == many.meters[0].id)
                           .order_by(BilledUsage.ended_at)).all()
    assert [e.astimezone(at("2026-01-01 00:00").tzinfo).date().isoformat() for e in ends] == [
        "2026-04-29", "2026-04-30", "2026-05-01"]


def test_a_large_batch_of_hourly_readings_over_a_month_end_is_dated_like_one_by_one(session, factory):
    """60 rows: on PostgreSQL the COPY path (50 rows or more), several days of one meter in a block."""
    site, one, many = _site(session, factory)
    _deliver(session, one, many, _series(60))
    _check_same(session, site, one, many)

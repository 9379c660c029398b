"""Every figure of the reports on a site small enough to work out by hand (tests/reports/conftest.py)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from core.ledger.check import validate as validate_ledger
from core.models import JournalEntry, LedgerAccount, Posting
from core.models.billing import BilledUsage
from core.reports import energy, finance
from core.reports.check import validate as validate_rollups
from tests.reports.conftest import at, ingest, pay_online


def rows_by_room(report):
    return {r["room"]: r for r in report.as_json()["rows"]}


def test_the_energy_report_splits_each_shop_by_tou_period_with_its_fees(session, plaza):
    rep = energy.energy(session, plaza.site, "2026-04")
    rows = rows_by_room(rep)
    assert set(rows) == {"101", "102", "201"}  # the water meter is in the water report
    r101, r102, r201 = rows["101"], rows["102"], rows["201"]
    assert (r101["total"], r101["sharp"], r101["peak"], r101["flat"], r101["valley"]) == (
        "11.00", "0.00", "0.00", "11.00", "0.00")  # a flat price: all of it at the standard (flat) rate
    assert (r101["fee"], r101["fee_by_period"]) == ("6.60", {"sharp": "0.00", "peak": "0.00", "flat": "6.60",
                                                            "valley": "0.00"})
    assert (r102["total"], r102["sharp"], r102["peak"], r102["flat"], r102["valley"]) == (
        "12.00", "0.00", "1.00", "10.00", "1.00")
    assert r102["fee"] == "6.20"
    assert r102["fee_by_period"] == {"sharp": "0.00", "peak": "1.00", "flat": "5.00", "valley": "0.20"}
    assert (r201["total"], r201["fee"]) == ("50.00", "50.00")  # postpaid: accrued, still the shop's fee
    assert r101["tenant"] == plaza.a101.tenant.name and r101["building"] == "A"
    total = rep.as_json()["total"]
    assert (total["total"], total["peak"], total["flat"], total["valley"], total["fee"]) == (
        "73.00", "1.00", "71.00", "1.00", "62.80")
    # building and floor filters
    only_b = energy.energy(session, plaza.site, "2026-04", building="B").as_json()
    assert [r["room"] for r in only_b["rows"]] == ["201"] and only_b["total"]["fee"] == "50.00"
    assert energy.energy(session, plaza.site, "2026-04", building="A", floor="2").as_json()["rows"] == []
    # the interval closed on May 1st at 00:30 belongs to May
    may = rows_by_room(energy.energy(session, plaza.site, "2026-05"))
    assert (may["101"]["total"], may["101"]["fee"]) == ("10.00", "6.00")


def test_the_water_report_is_in_cubic_metres_to_three_places(session, plaza):
    rep = energy.energy(session, plaza.site, "2026-04", utility="water").as_json()
    assert rep["unit"] == "m³"
    assert [(r["room"], r["total"], r["fee"]) for r in rep["rows"]] == [("202", "0.125", "0.63")]
    assert rep["total"]["total"] == "0.125"


def test_a_prepaid_shops_energy_fee_is_exactly_its_usage_entries(session, plaza):
    rep = energy.energy(session, plaza.site, "2026-04")
    for account in (plaza.a101, plaza.a102):
        row = next(r for r in rep.rows if r.account_id == account.id)
        # the usage entries of the month: consumption entries keyed by the readings that closed April's intervals
        entries = session.scalar(
            select(func.coalesce(func.sum(BilledUsage.amount_fen), 0))
            .join(JournalEntry, JournalEntry.id == BilledUsage.entry_id)
            .where(BilledUsage.account_id == account.id, BilledUsage.ended_at >= at("2026-04-01 00:00"),
                   BilledUsage.ended_at < at("2026-05-01 00:00")))
        posted = session.scalar(
            select(func.sum(Posting.amount_fen)).join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .join(BilledUsage, BilledUsage.entry_id == JournalEntry.id)
            .where(LedgerAccount.code == "revenue:electricity", JournalEntry.account_id == account.id,
                   BilledUsage.ended_at >= at("2026-04-01 00:00"), BilledUsage.ended_at < at("2026-05-01 00:00")))
        assert row.fee["total"] == entries == posted


def test_income_is_split_by_composition_and_dated_by_use_period_and_paid_time(session, plaza):
    rep = finance.income(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), "month").as_json()
    (april,) = rep["rows"]
    assert april["period"] == "2026-04"
    assert april["income"] == {"electricity": "12.80", "water": "0.63", "property": "30.00", "apportion": "0.00",
                               "other": "0.00", "total": "43.43"}
    assert april["cash_in"] == {"wechat": "200.00", "alipay": "0.00", "cash": "0.00", "transfer": "0.00",
                                "total": "200.00"}
    assert april["refunds"] == "0.00"
    assert rep["total"]["income"] == april["income"] and "period" not in rep["total"]
    days = {r["period"]: r for r in finance.income(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30),
                                                   "day").as_json()["rows"]}
    assert len(days) == 30
    assert days["2026-04-01"]["income"]["electricity"] == "0.60"   # the reading at 00:00 closes its interval
    assert days["2026-04-01"]["income"]["property"] == "30.00"     # a charge is dated by its period
    assert days["2026-04-02"]["income"]["electricity"] == "6.20"
    assert days["2026-04-15"]["income"]["electricity"] == "6.00"
    assert days["2026-04-30"]["cash_in"]["wechat"] == "200.00"     # paid 23:59:50, credited after midnight
    assert days["2026-04-03"]["income"]["total"] == "0.00"         # postpaid usage is not income until billed
    may_first = finance.income(session, plaza.site, date(2026, 5, 1), date(2026, 5, 1), "day").as_json()
    assert may_first["rows"][0]["income"]["electricity"] == "6.00"


def test_income_total_equals_the_revenue_postings_of_the_range(session, plaza):
    rep = finance.income(session, plaza.site, date(2026, 3, 1), date(2026, 5, 31), "year")
    revenue = session.scalar(
        select(func.sum(Posting.amount_fen)).join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
        .where(LedgerAccount.kind == "revenue"))
    assert rep.total.income["total"] == revenue == 1280 + 63 + 3000 + 600
    assert [r.period for r in rep.rows] == ["2026"]


def test_refunds_are_netted_from_cash_in_and_shown_positive(session, plaza):
    from core.db import utcnow
    from core.ledger import cashdesk
    from core.reports.rollups import local_day, zone
    cashdesk.desk_recharge(session, plaza.a102.id, 5_000, key="desk:1")
    cashdesk.refund(session, plaza.a102.id, 1_200, key="refund:desk:1")
    cashdesk.refund(session, plaza.a101.id, 700, key="refund:wx:1", to="clearing:wechat")
    session.commit()
    today = local_day(utcnow(), zone("Asia/Shanghai"))
    (row,) = finance.income(session, plaza.site, today, today, "day").as_json()["rows"]
    assert row["cash_in"] == {"wechat": "-7.00", "alipay": "0.00", "cash": "38.00", "transfer": "0.00",
                              "total": "31.00"}
    assert row["refunds"] == "19.00"


def test_year_on_year_marks_months_without_last_year_data_as_null(session, plaza):
    meter = plaza.a101.meters[0]
    ingest(session, meter, "2026-06-01 00:00", "1031.00")  # 10 kWh closing June 1st 2026
    session.commit()
    # a year before: the same room, another meter (on no account then), March-May 2025
    from core.models import Meter
    site = plaza.site
    old = Meter(serial="E101-OLD", site_id=site.id, room_id=plaza.a101.room_id, account_id=None, kind="electricity",
                profile="acrel-ddsy1352", address="9")
    session.add(old)
    session.flush()
    ingest(session, old, "2025-03-31 00:00", "10.00")
    ingest(session, old, "2025-04-10 00:00", "18.00")   # 8 kWh in April 2025
    ingest(session, old, "2025-05-01 00:00", "18.00")   # 0 kWh closing May 1st 2025: data, and zero
    session.commit()
    rows = {(r["key"], r["month"]): r for r in energy.yoy(session, site, 2026, by="room").as_json()["rows"]}
    april = rows[("101", "2026-04")]
    assert (april["usage"], april["usage_last_year"], april["change_pct"]) == ("11.00", "8.00", "37.50")
    may = rows[("101", "2026-05")]
    assert (may["usage"], may["usage_last_year"], may["change_pct"]) == ("10.00", "0.00", None)
    june = rows[("101", "2026-06")]
    assert (june["usage"], june["usage_last_year"], june["change_pct"]) == ("10.00", None, None)
    jan = rows[("101", "2026-01")]
    assert (jan["usage"], jan["usage_last_year"], jan["change_pct"]) == (None, None, None)
    assert len([k for k in rows if k[0] == "101"]) == 12
    by_building = {(r["key"], r["month"]): r for r in energy.yoy(session, site, 2026, by="building").as_json()["rows"]}
    assert by_building[("A", "2026-04")]["usage"] == "23.00" and by_building[("B", "2026-04")]["usage"] == "50.00"
    assert by_building[("B", "2026-04")]["usage_last_year"] is None
    by_site = energy.yoy(session, site, 2026, by="site").as_json()["rows"]
    assert [r["key"] for r in by_site] == ["Plaza"] * 12
    assert by_site[3]["usage"] == "73.00" and by_site[3]["usage_last_year"] == "8.00"


def test_the_meter_report_marks_gaps_and_anomalies_instead_of_interpolating(session, plaza):
    from core.billing import ingest as bill
    meter = plaza.a102.meters[0]
    ingest(session, meter, "2026-04-04 10:00", "520.00")   # April 3rd: no reading (a gap)
    bad = bill(session, meter.id, at("2026-04-05 10:00"), Decimal("3.00"))  # a misread: anomaly
    assert bad.status == "anomaly"
    ingest(session, meter, "2026-04-05 11:00", "521.50")
    session.commit()
    rep = energy.meter_report(session, meter, "day", "2026-04").as_json()
    assert rep["meter"] == "E102" and rep["unit"] == "kWh" and len(rep["rows"]) == 30
    rows = {r["period"]: r for r in rep["rows"]}
    assert rows["2026-04-01"] == {"period": "2026-04-01", "usage": None, "flag": "gap"}
    assert rows["2026-04-02"] == {"period": "2026-04-02", "usage": "12.00", "flag": None}  # from its first reading
    assert rows["2026-04-03"] == {"period": "2026-04-03", "usage": None, "flag": "gap"}
    assert rows["2026-04-04"] == {"period": "2026-04-04", "usage": "8.00", "flag": None}   # 512 -> 520 (the gap's too)
    assert rows["2026-04-05"] == {"period": "2026-04-05", "usage": "1.50", "flag": "anomaly"}
    assert rep["total"] == "21.50"
    months = energy.meter_report(session, meter, "month", "2026").as_json()["rows"]
    assert [m["period"] for m in months][:4] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert months[3] == {"period": "2026-04", "usage": "21.50", "flag": "anomaly"}
    assert months[0]["flag"] == "gap" and months[4] == {"period": "2026-05", "usage": None, "flag": "gap"}
    (year,) = energy.meter_report(session, meter, "year", "2026").as_json()["rows"]
    assert year == {"period": "2026", "usage": "21.50", "flag": "anomaly"}
    water = energy.meter_report(session, plaza.a202.meters[0], "day", "2026-04").as_json()
    assert water["unit"] == "m³" and water["rows"][4]["usage"] == "0.125"


def test_the_order_overview_lists_money_flows_with_filters_and_totals(session, plaza):
    from core.db import utcnow
    from core.ledger import cashdesk
    from core.reports.rollups import local_day, zone
    cashdesk.desk_recharge(session, plaza.a102.id, 5_000, key="desk:2")
    cashdesk.refund(session, plaza.a102.id, 1_200, key="refund:desk:2")
    pay_online(session, plaza.a202, 3_000, at("2026-04-12 10:00"), channel="alipay")
    session.commit()
    today = local_day(utcnow(), zone("Asia/Shanghai"))
    april = finance.orders(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30)).as_json()
    assert [(r["room"], r["kind"], r["channel"], r["amount"]) for r in april["rows"]] == [
        ("101", "recharge", "wechat", "200.00"), ("202", "recharge", "alipay", "30.00"),
        ("101", "charge", "wallet", "-30.00")]
    wx = april["rows"][0]
    assert wx["time"].startswith("2026-04-30T23:59:50") and wx["time"].endswith("+08:00")
    assert wx["state"] == "paid" and wx["provider_txn_id"] == f"TXN-{plaza.order_no}"
    assert april["rows"][2]["provider_txn_id"] is None and april["total"] == "200.00"
    assert finance.orders(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), channel="alipay").as_json()[
        "total"] == "30.00"
    assert finance.orders(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), kind="charge",
                          building="A").as_json()["total"] == "-30.00"
    now = finance.orders(session, plaza.site, today, today).as_json()
    assert {(r["kind"], r["channel"], r["amount"]) for r in now["rows"]} >= {
        ("recharge", "cash", "50.00"), ("refund", "cash", "-12.00")}
    usage = finance.orders(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), kind="consumption").as_json()
    assert usage["total"] == "-13.43"  # 101 6.60 + 102 6.20 + 202 0.63, from the wallets


def test_rollups_equal_the_sums_and_a_rebuild_gives_the_same_rows(session, plaza):
    from core.models.report import LedgerDay, ReadingDay, UsageDay, UsageMonth
    from core.reports.derive import rebuild
    assert validate_ledger(session) == [] and validate_rollups(session) == []

    def snapshot():
        return {m.__tablename__: sorted(tuple(str(getattr(r, c.key)) for c in m.__table__.columns)
                                        for r in session.scalars(select(m)))
                for m in (LedgerDay, UsageDay, UsageMonth, ReadingDay)}
    before = snapshot()
    assert all(before.values())
    rebuild(session)
    session.flush()
    assert snapshot() == before
    # a rollup that disagrees is named by the check
    from sqlalchemy import update
    session.execute(update(UsageDay).values(fee_fen=UsageDay.fee_fen + 1, f_none=UsageDay.f_none + 1))
    session.execute(update(LedgerDay).where(LedgerDay.kind == "charge").values(amount_fen=1))
    problems = validate_rollups(session)
    assert {p.check for p in problems} >= {"rollup-usage", "rollup-ledger", "rollup-usage-month"}
    assert any("revenue:charge:property" in p.subject for p in problems)

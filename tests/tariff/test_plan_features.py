"""Calendars, holidays, cycles, tiered+TOU, monthly charges, versions, CT ratio."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from core.tariffs import Interval, Pricer, State, Version, parse_plan, quote
from core.tariffs.calendar import table_for
from tests.tariff.plans import BEIJING_RESIDENTIAL, GUANGDONG_TOU, usage

DAY_PLAN = {"kind": "tou", "unit": "kWh", "prices": {"peak": "1", "flat": "0.5", "valley": "0.25"},
            "day_tables": {"work": [["00:00", "valley"], ["08:00", "peak"], ["20:00", "flat"]],
                           "rest": [["00:00", "valley"], ["08:00", "flat"]],
                           "special": [["00:00", "flat"]]},
            "calendar": [{"weekdays": [6, 7], "table": "rest"}, {"holiday": True, "table": "rest"},
                         {"dates": ["2026-11-11", "12-25"], "table": "special"}],
            "default_table": "work"}


def test_calendar_picks_weekend_holiday_and_dated_tables():
    plan = parse_plan(DAY_PLAN)
    assert table_for(plan, date(2026, 11, 27)) == "work"  # a Friday
    assert table_for(plan, date(2026, 11, 28)) == "rest"  # Saturday
    assert table_for(plan, date(2026, 10, 1)) == "rest"  # National Day, a Thursday
    assert table_for(plan, date(2026, 11, 11)) == "special"
    assert table_for(plan, date(2027, 12, 25)) == "special"  # every year; a Saturday, but dates win


def test_a_day_table_not_starting_at_midnight_wraps_like_a_meter_table():
    plan = {"kind": "tou", "unit": "kWh", "prices": {"peak": "1", "valley": "0.1"},
            "day_tables": {"d": [["08:00", "peak"], ["22:00", "valley"]]}}
    q = quote(plan, usage(("2026-07-01T00:00:00+08:00", "0"), ("2026-07-02T00:00:00+08:00", "24")))
    assert {ln["period"]: ln["quantity"] for ln in q["lines"]} == {"peak": "14.00", "valley": "10.00"}


def test_tiered_tou_adds_the_tier_surcharge_to_the_period_price():
    plan = {**{k: v for k, v in GUANGDONG_TOU.items() if k != "kind"}, "kind": "tiered_tou", "cycle": "month",
            "tiers": [{"upto": "12", "surcharge": "0"}, {"upto": None, "surcharge": "0.1"}]}
    q = quote(plan, usage(("2026-10-15T00:00:00+08:00", "0"), ("2026-10-16T00:00:00+08:00", "24")))
    # the first 12 kWh of the month (valley 0-8: 8, flat 8-10: 2, peak 10-12: 2) are surcharge-free
    lines = {(ln["tier"], ln["period"]): (ln["quantity"], ln["price"]) for ln in q["lines"]}
    assert lines[(1, "valley")] == ("8.00", "0.228")
    assert lines[(2, "peak")] == ("5.00", "1.12")
    assert q["total"] == "15.56"  # the plain TOU day (14.364) + 12 kWh x 0.1


def test_monthly_charge_is_made_once_per_month_with_usage():
    plan = {"kind": "flat", "unit": "kWh", "price": "1", "monthly_charge": "20.00"}
    q = quote(plan, usage(("2026-07-20T00:00:00+08:00", "0"), ("2026-07-25T00:00:00+08:00", "5"),
                          ("2026-08-02T00:00:00+08:00", "10")))
    assert q["total"] == "50.00"
    assert q["lines"][-1] == {"charge": "monthly", "quantity": "2", "price": "20.00", "amount": "40.00"}


def test_cycle_start_day_moves_the_tier_reset():
    plan = {**BEIJING_RESIDENTIAL, "cycle_start_day": 15}
    q = quote(plan, usage(("2026-07-01T00:00:00+08:00", "0"), ("2026-07-15T00:00:00+08:00", "240"),
                          ("2026-07-20T00:00:00+08:00", "480")))
    assert [(ln["tier"], ln["quantity"]) for ln in q["lines"]] == [(1, "480.00")]


def test_ct_ratio_multiplies_usage():
    q = quote({"kind": "flat", "unit": "kWh", "price": "0.6"},
              usage(("2026-07-01T00:00:00+08:00", "1.00"), ("2026-07-02T00:00:00+08:00", "2.00")), ct_ratio=50)
    assert q["total"] == "30.00"


def test_versions_split_an_interval_at_the_change_and_tiers_count_on():
    old = parse_plan(BEIJING_RESIDENTIAL)
    new = parse_plan({**BEIJING_RESIDENTIAL, "tiers": [{"upto": "240", "price": "1"}, {"upto": None, "price": "2"}]})
    pricer = Pricer([Version(date(2000, 1, 1), old), Version(date(2026, 7, 11), new)], "Asia/Shanghai")
    from datetime import datetime
    from zoneinfo import ZoneInfo
    tz = ZoneInfo("Asia/Shanghai")
    iv = Interval(datetime(2026, 7, 1, tzinfo=tz), datetime(2026, 7, 31, tzinfo=tz), Decimal("300"))
    priced = pricer.price([iv])
    # 10 days old (100 kWh, tier 1), 20 days new: 140 more in tier 1, then 60 in tier 2
    assert [(ln.tier, ln.quantity, ln.price) for ln in priced.lines] == [
        (1, Decimal("100"), Decimal("0.4883")), (1, Decimal("140"), Decimal("1")), (2, Decimal("60"), Decimal("2"))]
    assert priced.state == State("2026-07-01", Decimal("300"), None)


def test_a_tou_plan_with_tiers_is_tiered_tou():
    plan = parse_plan({**GUANGDONG_TOU, "tiers": [{"upto": "100", "surcharge": "0"}, {"upto": None, "surcharge": "0.1"}]})
    assert plan.kind == "tiered_tou" and plan.tiers[1].price == Decimal("0.1")

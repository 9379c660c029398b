"""The engine prices what published Chinese tariffs say."""
from __future__ import annotations

from core.tariffs import quote
from tests.tariff.plans import BEIJING_RESIDENTIAL, BEIJING_WATER, GUANGDONG_TOU, usage


def test_beijing_residential_500_kwh_in_a_month_costs_282_15():
    q = quote(BEIJING_RESIDENTIAL, usage(("2026-07-01T00:00:00+08:00", "1000.00"),
                                         ("2026-07-31T00:00:00+08:00", "1500.00")))
    assert q == {"total": "282.15", "currency": "CNY", "lines": [
        {"tier": 1, "quantity": "240.00", "price": "0.4883", "amount": "117.19"},
        {"tier": 2, "quantity": "160.00", "price": "0.5383", "amount": "86.13"},
        {"tier": 3, "quantity": "100.00", "price": "0.7883", "amount": "78.83"}]}


def test_beijing_tiers_start_again_each_month_in_the_site_timezone():
    # 240 kWh in June then 240 in July: both in the first tier. The boundary is Beijing midnight,
    # 16:00 UTC, so the reading at 2026-06-30T16:00Z closes June exactly.
    q = quote(BEIJING_RESIDENTIAL, usage(("2026-06-01T00:00:00+08:00", "0"),
                                         ("2026-06-30T16:00:00+00:00", "240"),
                                         ("2026-07-31T00:00:00+08:00", "480")))
    assert [(ln["tier"], ln["quantity"]) for ln in q["lines"]] == [(1, "480.00")]
    assert q["total"] == "234.38"


def test_beijing_water_300_m3_in_a_year_costs_1820():
    q = quote(BEIJING_WATER, usage(("2026-01-01T00:00:00+08:00", "0.000"), ("2026-12-31T00:00:00+08:00", "300.000")))
    assert q["total"] == "1820.00"
    assert [ln["quantity"] for ln in q["lines"]] == ["180.000", "80.000", "40.000"]


def test_guangdong_summer_day_has_critical_peak_at_11_and_15_to_17():
    # 1 kWh every hour of 2026-07-15: 3 h sharp, 4 h peak, 9 h flat, 8 h valley.
    q = quote(GUANGDONG_TOU, usage(("2026-07-15T00:00:00+08:00", "0"), ("2026-07-16T00:00:00+08:00", "24")))
    assert {ln["period"]: ln["quantity"] for ln in q["lines"]} == {
        "sharp": "3.00", "peak": "4.00", "flat": "9.00", "valley": "8.00"}
    assert q["total"] == "15.13"  # 3.825 + 4.08 + 5.4 + 1.824 = 15.129


def test_guangdong_outside_summer_has_no_critical_peak():
    q = quote(GUANGDONG_TOU, usage(("2026-10-15T00:00:00+08:00", "0"), ("2026-10-16T00:00:00+08:00", "24")))
    assert {ln["period"]: ln["quantity"] for ln in q["lines"]} == {
        "peak": "7.00", "flat": "9.00", "valley": "8.00"}
    assert q["total"] == "14.36"  # 7.14 + 5.4 + 1.824 = 14.364


def test_usage_across_a_day_table_change_is_prorated_by_time():
    # 2026-09-30 12:00 to 2026-10-01 12:00, 24 kWh evenly: summer afternoon, normal morning.
    q = quote(GUANGDONG_TOU, usage(("2026-09-30T12:00:00+08:00", "0"), ("2026-10-01T12:00:00+08:00", "24")))
    assert {ln["period"]: ln["quantity"] for ln in q["lines"]} == {
        "sharp": "2.00", "peak": "5.00", "flat": "9.00", "valley": "8.00"}


def test_meter_registers_decide_the_tou_split_when_present():
    q = quote(GUANGDONG_TOU, usage(("2026-07-15T00:00:00+08:00", "0"), ("2026-07-16T00:00:00+08:00", "24"),
                                   periods=[{"sharp": "0", "peak": "0", "flat": "0", "valley": "0"},
                                            {"sharp": "0", "peak": "0", "flat": "4", "valley": "20"}]))
    assert {ln["period"]: ln["quantity"] for ln in q["lines"]} == {"flat": "4.00", "valley": "20.00"}


def test_a_water_plan_may_write_its_unit_as_m3_or_m_cubed():
    for spelling in ("m³", "m3", "M3"):
        plan = {**BEIJING_WATER, "unit": spelling}
        q = quote(plan, usage(("2026-01-01T00:00:00+08:00", "0.000"), ("2026-12-31T00:00:00+08:00", "300.000")))
        assert q["total"] == "1820.00" and q["lines"][0]["quantity"] == "180.000"

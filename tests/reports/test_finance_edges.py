"""The order overview finds charges posted ahead of their period; filters and spans are checked."""
from __future__ import annotations

from datetime import date

import pytest

from core.errors import ValidationError
from core.reports import base, finance
from tests.reports.conftest import post_charge


def test_a_charge_posted_before_its_period_is_in_the_overview_of_its_period(session, plaza):
    entry_id = post_charge(session, plaza.a101, 1234, "2027-01")  # a month end run ahead, posted now
    session.commit()
    rows = finance.orders(session, plaza.site, date(2027, 1, 1), date(2027, 1, 1)).as_json()["rows"]
    assert [(r["entry_id"], r["kind"], r["amount"]) for r in rows] == [(entry_id, "charge", "-12.34")]
    income = finance.income(session, plaza.site, date(2027, 1, 1), date(2027, 1, 1)).as_json()
    assert income["total"]["income"]["property"] == "12.34"


def test_an_unknown_state_is_refused_and_a_known_one_filters(session, plaza):
    with pytest.raises(ValidationError):
        finance.orders(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), state="weird")
    paid = finance.orders(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), state="paid").as_json()["rows"]
    assert [r["state"] for r in paid] == ["paid"]


def test_years_by_year_or_month_may_span_more_than_three_years_days_may_not():
    assert base.parse_range("2020-01-01", "2026-12-31", "year") == (date(2020, 1, 1), date(2026, 12, 31))
    assert base.parse_range("2020-01-01", "2026-12-31", "month")[0] == date(2020, 1, 1)
    with pytest.raises(ValidationError):
        base.parse_range("2020-01-01", "2026-12-31", "day")
    with pytest.raises(ValidationError):
        base.parse_range("2020-01-01", "2026-12-31")


def test_a_postpaid_bill_confirmed_later_counts_in_its_month(session, plaza):
    """Books (201, postpaid) used 50 kWh at 1.00 in April: its April bill, confirmed today, is April's
    electricity income (dated April 1, as charges are), not today's."""
    from core.bills.service import confirm
    from core.monthend.run import run_month_end
    run_month_end(plaza.site.id, "2026-04", actor="test")
    assert confirm(session, plaza.site.id, "2026-04", actor="test", front="cli").count == 1
    session.commit()
    april = finance.income(session, plaza.site, date(2026, 4, 1), date(2026, 4, 30), by="month").as_json()
    # 12.80 of prepaid usage (101, 102) + the bill's 50.00
    assert april["total"]["income"]["electricity"] == "62.80"
    day_one = finance.income(session, plaza.site, date(2026, 4, 1), date(2026, 4, 1)).as_json()
    assert day_one["total"]["income"]["electricity"] == "50.60"  # with 101's 0.60 read at 00:00 on April 1

"""Properties of the engine: pricing in parts with the state carried equals pricing the whole."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from core.tariffs import Pricer, allocate, parse_plan
from core.tariffs.usage import RegisterReading, intervals
from tests.tariff.plans import BEIJING_RESIDENTIAL, GUANGDONG_TOU

TZ = ZoneInfo("Asia/Shanghai")
TIERED_TOU = {**{k: v for k, v in GUANGDONG_TOU.items() if k != "kind"}, "kind": "tiered_tou",
              "cycle": "month", "cycle_start_day": 10, "monthly_charge": "12.50",
              "tiers": [{"upto": "50", "surcharge": "0"}, {"upto": "120", "surcharge": "0.05"},
                        {"upto": None, "surcharge": "0.3"}]}
PLANS = [parse_plan(p) for p in (BEIJING_RESIDENTIAL, GUANGDONG_TOU, TIERED_TOU,
                                 {"kind": "flat", "unit": "kWh", "price": "0.6"})]
START = datetime(2026, 6, 20, 3, 17, tzinfo=TZ)


@st.composite
def series(draw):
    """Increasing readings: gaps of 1 minute to 20 days, usage 0 to 80 kWh each."""
    n = draw(st.integers(2, 25))
    at, total = START, Decimal("1000.00")
    out = [RegisterReading(at, total)]
    for _ in range(n - 1):
        at += timedelta(minutes=draw(st.integers(1, 20 * 24 * 60)))
        total += Decimal(draw(st.integers(0, 8000))) / 100
        out.append(RegisterReading(at, total))
    return out


def totals(priced):
    return {ln.key: (ln.quantity, ln.amount) for ln in priced.lines}


@settings(max_examples=150, deadline=None)
@given(series(), st.sampled_from(PLANS), st.data())
def test_pricing_in_two_parts_with_the_state_carried_equals_pricing_whole(readings, plan, data):
    cut = data.draw(st.integers(0, len(readings) - 1))
    pricer = Pricer(plan, TZ)
    whole = pricer.price(intervals(readings))
    first = pricer.price(intervals(readings[:cut + 1]))
    second = pricer.price(intervals(readings[cut:]), first.state)
    assert first.amount + second.amount == whole.amount
    assert second.state == whole.state
    merged = totals(first)
    for key, (q, a) in totals(second).items():
        q0, a0 = merged.get(key, (0, 0))
        merged[key] = (q0 + q, a0 + a)
    assert merged == totals(whole)


@settings(max_examples=150, deadline=None)
@given(series(), st.sampled_from(PLANS))
def test_every_unit_of_usage_is_priced_exactly_once(readings, plan):
    priced = Pricer(plan, TZ).price(intervals(readings))
    usage_lines = [ln for ln in priced.lines if ln.charge is None]
    assert sum(ln.quantity for ln in usage_lines) == readings[-1].total - readings[0].total
    assert all(ln.amount == ln.quantity * ln.price for ln in priced.lines)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10 ** 9), st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=20))
def test_allocation_adds_up_and_never_goes_negative(units, weights):
    q = Decimal(units).scaleb(-6)
    parts = allocate(q, weights)
    assert sum(parts) == q and all(p >= 0 for p in parts)

"""The engine joins back-to-back intervals only where that cannot change a single line.

Reference: every interval priced on its own, the state carried from one to the next, the lines
summed. The engine prices the whole series at once (joining what it may); both must agree on every
line's quantity and amount, on the total and on the state carried out.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from core.tariffs import Interval, Pricer, Version, parse_plan
from tests.tariff.plans import BEIJING_RESIDENTIAL, BEIJING_WATER, GUANGDONG_TOU

TZ = ZoneInfo("Asia/Shanghai")
TIERED_TOU = {**{k: v for k, v in GUANGDONG_TOU.items() if k != "kind"}, "kind": "tiered_tou",
              "cycle": "month", "cycle_start_day": 10, "monthly_charge": "12.50",
              "tiers": [{"upto": "5", "surcharge": "0"}, {"upto": "12", "surcharge": "0.05"},
                        {"upto": None, "surcharge": "0.3"}]}
SMALL_TIERS = {"kind": "tiered", "unit": "kWh", "cycle": "month", "monthly_charge": "3",
               "tiers": [{"upto": "3", "price": "0.4"}, {"upto": "9", "price": "0.5"}, {"upto": None, "price": "0.8"}]}
SPECS = [BEIJING_RESIDENTIAL, BEIJING_WATER, GUANGDONG_TOU, TIERED_TOU, SMALL_TIERS,
         {"kind": "flat", "unit": "kWh", "price": "0.6", "monthly_charge": "5"}]
PERIODS = ("sharp", "peak", "flat", "valley")
START = datetime(2026, 6, 28, 21, 0, tzinfo=TZ)


def pricers():
    out = [Pricer(parse_plan(s), TZ) for s in SPECS]
    # Two versions: the price changes on 2026-07-02, so some series cross a version change.
    out.append(Pricer([Version(date(2026, 1, 1), parse_plan(SMALL_TIERS)),
                       Version(date(2026, 7, 2), parse_plan({**SMALL_TIERS, "tiers": [
                           {"upto": "4", "price": "0.45"}, {"upto": None, "price": "0.9"}]}))], TZ))
    out.append(Pricer([Version(date(2026, 1, 1), parse_plan(GUANGDONG_TOU)),
                       Version(date(2026, 7, 2), parse_plan({**GUANGDONG_TOU, "prices": {
                           "sharp": "1.3", "peak": "1.1", "flat": "0.62", "valley": "0.25"}}))], TZ))
    return out


PRICERS = pricers()


@st.composite
def series(draw):
    """Back-to-back intervals of 1 minute to 2 days (crossing midnights, month ends and the version
    change), with or without register deltas that add up to the quantity or do not."""
    n = draw(st.integers(1, 30))
    regs_mode = draw(st.sampled_from(["none", "exact", "off", "mixed"]))
    at = START
    out = []
    for _ in range(n):
        end = at + timedelta(minutes=draw(st.sampled_from([1, 15, 15, 15, 60, 90, 24 * 60, 2 * 24 * 60 + 7])))
        parts = [Decimal(draw(st.integers(0, 300))) / 100 for _ in PERIODS]
        quantity = sum(parts, Decimal(0))
        mode = draw(st.sampled_from(["none", "exact", "off"])) if regs_mode == "mixed" else regs_mode
        if mode == "none":
            periods = None
        else:
            periods = dict(zip(PERIODS, parts))
            if mode == "off":
                quantity += Decimal(draw(st.integers(1, 50))) / 100
        out.append(Interval(at, end, quantity, periods))
        at = end
    return out


def one_by_one(pricer, intervals, state):
    acc, amount = {}, Decimal(0)
    for iv in intervals:
        priced = pricer.price([iv], state)
        state = priced.state
        amount += priced.amount
        for ln in priced.lines:
            q, a = acc.get(ln.key, (0, 0))
            acc[ln.key] = (q + ln.quantity, a + ln.amount)
    return acc, amount, state


@settings(max_examples=400, deadline=None)
@given(series(), st.sampled_from(PRICERS))
def test_pricing_a_series_at_once_equals_pricing_each_interval_alone(intervals, pricer):
    from core.tariffs import State
    ref_lines, ref_amount, ref_state = one_by_one(pricer, intervals, State())
    whole = pricer.price(intervals, State())
    assert {ln.key: (ln.quantity, ln.amount) for ln in whole.lines} == {
        k: v for k, v in ref_lines.items() if v[0] or k[0] is not None}
    assert whole.amount == ref_amount
    assert whole.state == ref_state


def test_a_day_of_quarter_hours_on_a_tiered_plan_is_priced_as_one_piece():
    pricer = Pricer(parse_plan(BEIJING_RESIDENTIAL), TZ)
    ivs = [Interval(START + timedelta(minutes=15 * k), START + timedelta(minutes=15 * (k + 1)), Decimal("3"))
           for k in range(8)]  # 21:00 to 23:00, one cycle
    assert len(list(pricer._coalesced(ivs))) == 1
    # across the local midnight that starts July (a new cycle) it must be cut in two
    ivs = [Interval(START + timedelta(days=2, minutes=15 * k), START + timedelta(days=2, minutes=15 * (k + 1)),
                    Decimal("3")) for k in range(16)]
    assert len(list(pricer._coalesced(ivs))) == 2


def test_tou_split_by_time_is_never_joined():
    pricer = Pricer(parse_plan(GUANGDONG_TOU), TZ)
    ivs = [Interval(START + timedelta(minutes=15 * k), START + timedelta(minutes=15 * (k + 1)), Decimal("1"))
           for k in range(4)]
    assert len(list(pricer._coalesced(ivs))) == 4

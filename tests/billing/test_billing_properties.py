"""Properties of billing: duplicates and shuffled delivery change nothing; a flat plan bills
(last - first) x CT ratio x price, whatever the chunks."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core import ledger
from core.billing import RawReading, ingest_batch
from core.ledger.check import validate
from core.ledger.money import to_fen
from core.models.billing import BilledUsage
from tests.billing.conftest import BEIJING_TIERS, at

GD_TOU = {"kind": "tou", "unit": "kWh", "prices": {"peak": "1.02", "flat": "0.6", "valley": "0.228"},
          "day_tables": {"d": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["19:00", "flat"]]}}
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def readings(draw):
    n = draw(st.integers(2, 12))
    t, total = at("2026-07-28 00:00"), Decimal("500.00")
    out = [(t, total)]
    for _ in range(n - 1):
        t += timedelta(hours=draw(st.integers(1, 96)))
        total += Decimal(draw(st.integers(0, 9000))) / 100
        out.append((t, total))
    return out


def deliver(session, meter_id, series, batches):
    for batch in batches:
        ingest_batch(session, [RawReading(meter_id, t, v) for t, v in batch])
    session.commit()


def chunks(items, rnd):
    out, i = [], 0
    while i < len(items):
        k = rnd.randint(1, len(items) - i)
        out.append(items[i:i + k])
        i += k
    return out


@PROPS
@given(readings(), st.sampled_from([BEIJING_TIERS, GD_TOU]), st.randoms(use_true_random=False))
def test_shuffled_and_duplicated_delivery_in_one_batch_bills_the_same(session, billed_account, series, plan, rnd):
    a1, m1 = billed_account(plan)
    a2, m2 = billed_account(plan)
    deliver(session, m1.id, series, [series])
    noisy = series + rnd.sample(series, k=rnd.randint(0, len(series)))
    rnd.shuffle(noisy)
    deliver(session, m2.id, series, [noisy])
    assert ledger.account_balance(session, a1.id) == ledger.account_balance(session, a2.id)
    lines = [session.scalars(select(BilledUsage.lines).where(BilledUsage.meter_id == m)
                                .order_by(BilledUsage.started_at)).all() for m in (m1.id, m2.id)]
    assert lines[0] == lines[1]


@PROPS
@given(readings(), st.integers(1, 80), st.randoms(use_true_random=False))
def test_flat_plan_bills_last_minus_first_times_ct_whatever_the_order_and_replays(session, billed_account, series,
                                                                                  ct, rnd):
    acct, meter = billed_account({"kind": "flat", "unit": "kWh", "price": "0.5383"}, ct_ratio=ct,
                                 balance_fen=0)
    rest = series[1:] + rnd.sample(series, k=rnd.randint(0, len(series)))
    rnd.shuffle(rest)
    # the commissioning reading comes first; everything after arrives in any order, in any batches, twice
    deliver(session, meter.id, series, [[series[0]], *chunks(rest, rnd), *chunks(series, rnd)])
    expected = to_fen((series[-1][1] - series[0][1]) * ct * Decimal("0.5383"))
    assert ledger.account_balance(session, acct.id) == -expected
    assert validate(session) == []


@st.composite
def after_a_cursor(draw):
    """A first reading (the cursor), then a batch: times after, at or before it, totals that may
    fall (anomalies), repeats, in time order or not."""
    start = at("2026-07-28 00:00")
    rows = []
    for _ in range(draw(st.integers(1, 10))):
        hours = draw(st.integers(-3, 30))
        rows.append((start + timedelta(hours=hours), Decimal("500.00") + Decimal(draw(st.integers(-300, 9000))) / 100))
    if draw(st.booleans()):
        rows.sort()
    return rows


@PROPS
@given(after_a_cursor())
def test_a_plain_run_taken_at_once_decides_as_row_by_row(session, billed_account, monkeypatch, batch):
    """``_decide_and_bill`` takes a meter's rows as one run when each would be a plain accepted
    reading (``_RUN`` rows or more); otherwise row by row. Either way every row gets the same
    status, reason, amount and quantity, and the same usage is billed."""
    import sys
    decide = sys.modules["core.billing.ingest"]
    results, balances = [], []
    for run in (1, 10 ** 9):
        monkeypatch.setattr(decide, "_RUN", run)
        account, meter = billed_account(BEIJING_TIERS)
        ingest_batch(session, [RawReading(meter.id, at("2026-07-28 00:00"), Decimal("500.00"))])
        res = ingest_batch(session, [RawReading(meter.id, t, v) for t, v in batch])
        results.append([(r.status, r.reason, r.billed_fen, r.quantity, r.late) for r in res.results])
        balances.append(ledger.account_balance(session, account.id))
    session.commit()
    assert results[0] == results[1] and balances[0] == balances[1]

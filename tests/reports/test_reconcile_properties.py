"""After any history -- readings in batches of any size (late, duplicate, anomalous, across midnights
and month ends), desk recharges and refunds, online payments paid before midnight and credited after,
charges for a period, adjustments -- every report reconciles with the ledger and the raw rows:

- ``ledger check`` (the ledger's checks and the rollups') is clean, and a rebuild gives the same rollups;
- income per month equals the revenue postings of the site's entries dated by an independent path
  (usage by its billed interval's end, payments by the order's paid time, charges by their period);
- cash in per channel equals what the cash and clearing accounts received, refunds what they paid back;
- each shop's energy per month equals its billed usage rows (quantity and fen), and a prepaid
  shop's fee equals its usage entries;
- a meter's daily report equals the same rule applied to its raw readings.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.billing import RawReading, ingest_batch
from core.errors import InsufficientFunds
from core.ledger import cashdesk
from core.ledger.check import validate as validate_ledger
from core.models import JournalEntry, LedgerAccount, PaymentOrder, Posting, Reading
from core.models.billing import BilledUsage
from core.reports import energy, finance
from core.reports.check import validate as validate_rollups
from core.sites.accounts import MeterSpec
from core.tariffs.store import add_plan
from tests.reports.conftest import FLAT_060, TOU, pay_online, post_charge

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 30, 20, 0, tzinfo=SH)
TIERED = {"kind": "tiered", "unit": "kWh", "cycle": "month",
          "tiers": [{"upto": "5", "price": "0.5"}, {"upto": None, "price": "0.9"}]}
PLANS = {"flat": FLAT_060, "tou": TOU, "tiered": TIERED}
MODES = ("prepaid-platform", "postpaid", "prepaid-meter")
_seq = itertools.count(1)

reading_step = st.tuples(st.integers(0, 2),                     # meter
                         st.integers(10, 30 * 60),              # minutes after the meter's previous reading
                         st.integers(0, 500),                   # hundredths of kWh used
                         st.sampled_from(["ok"] * 8 + ["anomaly", "duplicate", "late"]))
op = st.one_of(
    st.tuples(st.just("readings"), st.lists(reading_step, min_size=1, max_size=12)),
    st.tuples(st.just("desk"), st.integers(0, 2), st.integers(1, 50_000)),
    st.tuples(st.just("refund"), st.integers(0, 2), st.integers(1, 30_000), st.sampled_from(["cash:desk",
                                                                                           "clearing:wechat"])),
    st.tuples(st.just("pay"), st.integers(0, 2), st.integers(1, 50_000), st.integers(0, 40 * 24 * 60),
              st.sampled_from(["wechat", "alipay"])),
    st.tuples(st.just("charge"), st.integers(0, 2), st.integers(1, 10_000), st.sampled_from(["2026-01", "2026-02"])),
    st.tuples(st.just("adjust"), st.integers(0, 2), st.integers(-5_000, 5_000).filter(bool)),
)
history = st.tuples(st.lists(st.sampled_from(list(PLANS)), min_size=3, max_size=3),
                    st.lists(st.sampled_from(MODES), min_size=3, max_size=3),
                    st.lists(op, min_size=1, max_size=14))


def month_of(at: datetime) -> str:
    return at.astimezone(SH).strftime("%Y-%m")


@pytest.mark.parametrize("copy_from", [1, 10**9], ids=["copy-merge", "insert-merge"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(history)
def test_every_report_reconciles_after_a_random_history(session, factory, monkeypatch, copy_from, history):
    from core.reports import rollups
    monkeypatch.setattr(rollups, "COPY_FROM", copy_from)  # PostgreSQL merges big batches through COPY
    plans, modes, ops = history
    n = next(_seq)
    site = factory.site(f"Random {n}")
    for name, spec in PLANS.items():
        add_plan(session, f"{name}-{n}", spec)
    accounts = [factory.account(room=factory.room(site, f"R{i}", building="AB"[i % 2]), tariff=f"{plans[i]}-{n}",
                                billing_mode=modes[i], balance_fen=50_000,
                                meters=(MeterSpec(serial=f"RND{n}-{i}"),)) for i in range(3)]
    meters = [a.meters[0] for a in accounts]
    clock = {m.id: START for m in meters}
    total = {m.id: Decimal("100.00") for m in meters}
    for step in ops:
        kind = step[0]
        if kind == "readings":
            rows = []
            for i, minutes, used, how in step[1]:
                mid = meters[i].id
                if how == "duplicate" and rows:
                    rows.append(rows[-1])
                    continue
                if how == "late":
                    rows.append(RawReading(mid, clock[mid] - timedelta(minutes=minutes % 600 + 1), total[mid]))
                    continue
                clock[mid] += timedelta(minutes=minutes)
                if how == "anomaly":
                    rows.append(RawReading(mid, clock[mid], total[mid] - Decimal("50.00")))
                    continue
                total[mid] += Decimal(used) / 100
                rows.append(RawReading(mid, clock[mid], total[mid]))
            ingest_batch(session, rows)
        elif kind == "desk":
            cashdesk.desk_recharge(session, accounts[step[1]].id, step[2])
        elif kind == "refund":
            try:
                with session.begin_nested():
                    cashdesk.refund(session, accounts[step[1]].id, step[2], to=step[3])
            except InsufficientFunds:
                pass
        elif kind == "pay":
            pay_online(session, accounts[step[1]], step[2], START + timedelta(minutes=step[3]), channel=step[4])
        elif kind == "charge":
            post_charge(session, accounts[step[1]], step[2], step[3])
        else:
            cashdesk.adjust(session, accounts[step[1]].id, step[2], reason="random")
        session.commit()

    assert validate_ledger(session) == []
    assert validate_rollups(session) == []

    # --- income and cash in against the postings, dated by an independent path -------------------
    ids = [a.id for a in accounts]
    entries = {e.id: e for e in session.scalars(select(JournalEntry).where(JournalEntry.account_id.in_(ids)))}
    ended = dict(session.execute(select(BilledUsage.entry_id, BilledUsage.ended_at)
                                 .where(BilledUsage.entry_id.in_(list(entries) or [-1]))).all())
    paid = dict(session.execute(select(PaymentOrder.order_no, PaymentOrder.paid_at)
                                .where(PaymentOrder.account_id.in_(ids))).all())

    def when(e: JournalEntry) -> datetime:
        if e.kind == "consumption" and e.id in ended:
            return ended[e.id]
        if e.kind == "recharge" and (e.meta or {}).get("order_no"):
            return paid[e.meta["order_no"]]
        if e.kind == "charge":
            return datetime.fromisoformat(e.idempotency_key.rsplit(":", 1)[1] + "-01").replace(tzinfo=SH)
        return e.created_at
    expected_income: dict[str, int] = defaultdict(int)
    expected_cash: dict[tuple[str, str], int] = defaultdict(int)
    expected_refunds = 0
    channel = {"cash:desk": "cash", "clearing:wechat": "wechat", "clearing:alipay": "alipay"}
    for entry_id, code, kind, amount in session.execute(
            select(Posting.entry_id, LedgerAccount.code, LedgerAccount.kind, Posting.amount_fen)
            .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
            .where(Posting.entry_id.in_(list(entries) or [-1]))):
        e = entries[entry_id]
        if kind == "revenue":
            expected_income[month_of(when(e))] += amount
        if code in channel:
            expected_cash[(month_of(when(e)), channel[code])] -= amount
            original = entries[e.reverses_id].kind if e.reverses_id else e.kind
            if original == "refund":
                expected_refunds += amount
    first, last = date(2025, 12, 1), date(2026, 12, 31)
    rep = finance.income(session, site, first, last, "month")
    got = {r.period: r.income.get("total", 0) for r in rep.rows if r.income.get("total", 0)}
    assert got == {k: v for k, v in expected_income.items() if v}
    got_cash = {(r.period, k): r.cash_in.get(k, 0) for r in rep.rows for k in ("cash", "wechat", "alipay")}
    assert {k: v for k, v in got_cash.items() if v} == {k: v for k, v in expected_cash.items() if v}
    assert rep.total.refunds == expected_refunds
    assert rep.total.income["total"] == sum(expected_income.values())

    # --- energy per shop per month against the billed usage rows -------------------------------------
    usage: dict[tuple[int, str], list] = defaultdict(lambda: [Decimal(0), 0, 0])
    for account_id, ended_at, quantity, fen, entry_id in session.execute(
            select(BilledUsage.account_id, BilledUsage.ended_at, BilledUsage.quantity, BilledUsage.amount_fen,
                   BilledUsage.entry_id).where(BilledUsage.account_id.in_(ids))):
        u = usage[(account_id, month_of(ended_at))]
        u[0] += Decimal(quantity)
        u[1] += fen
        if entry_id is not None:
            u[2] += sum(p.amount_fen for p in entries[entry_id].postings if p.amount_fen > 0)
    for month in sorted({m for _a, m in usage}):
        rep_e = energy.energy(session, site, month)
        for row in rep_e.rows:
            q, fen, posted = usage[(row.account_id, month)]
            assert (row.quantity["total"], row.fee["total"]) == (q, fen)
            assert sum(row.quantity[p] for p in ("sharp", "peak", "flat", "valley")) == q
            assert sum(row.fee[p] for p in ("sharp", "peak", "flat", "valley", "fixed")) == fen
            if next(a for a in accounts if a.id == row.account_id).billing_mode == "prepaid-platform":
                assert fen == posted

    # --- a meter's days against its raw readings -----------------------------------------------------
    for m in meters:
        readings = session.execute(select(Reading.taken_at, Reading.total, Reading.status)
                                   .where(Reading.meter_id == m.id).order_by(Reading.taken_at)).all()
        for month in sorted({month_of(r.taken_at) for r in readings}):
            rows = energy.meter_report(session, m, "day", month).as_json()["rows"]
            before = [r.total for r in readings if month_of(r.taken_at) < month and r.status != "anomaly"]
            prev = before[-1] if before else None
            for row in rows:
                day = date.fromisoformat(row["period"])
                of_day = [r for r in readings if r.taken_at.astimezone(SH).date() == day]
                good = [r for r in of_day if r.status != "anomaly"]
                if not of_day:
                    assert row == {"period": row["period"], "usage": None, "flag": "gap"}
                    continue
                expected = None
                if good:
                    base = prev if prev is not None else good[0].total
                    expected = f"{(good[-1].total - base):.2f}"
                    prev = good[-1].total
                assert row["usage"] == expected, (m.serial, row)
                anomalous = len(good) < len(of_day) or (expected is not None and Decimal(expected) < 0)
                assert row["flag"] == ("anomaly" if anomalous else None)

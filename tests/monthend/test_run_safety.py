"""The month-end run is safe to preview, to run again, to resume after a crash and to run twice at
once: every key posts once and ``meterpay ledger check`` (ledger, payments and rollup checks) stays clean."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from core.ledger.check import validate
from core.models import (
    AuditLog,
    JournalEntry,
    LedgerAccount,
    LedgerDay,
    MonthEndStep,
    MonthItem,
    Posting,
)
from core.monthend import run as monthend
from core.monthend.rules import add_rule
from core.monthend.run import run_month_end
from core.monthend.schemes import add_scheme
from core.payments import checks as payment_checks
from core.reports.check import validate as validate_rollups
from tests.monthend.conftest import open_at

FIXED = {"name": "服务费", "code": "service", "basis": "fixed", "amount": "12.34", "every": "month",
         "mode": "deduct", "prorate": "none", "start": "2026-01-01", "scope": "all"}
PER_M2 = {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "1.8", "every": "month",
          "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": "all"}
QUARTER = {"name": "房租", "code": "rent", "basis": "fixed", "amount": "300", "every": "quarter", "day": 5,
           "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": {"buildings": ["A"]}}


def check_clean(session) -> None:
    session.expire_all()
    assert validate(session) + payment_checks.validate(session) + validate_rollups(session) == []


def snapshot(session) -> dict:
    session.expire_all()
    counts = {m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in
              (JournalEntry, Posting, MonthItem, MonthEndStep, LedgerAccount, LedgerDay, AuditLog)}
    balances = dict(session.execute(select(LedgerAccount.code, LedgerAccount.balance_fen)).all())
    return {"counts": counts, "balances": balances}


@pytest.fixture
def busy(session, factory, garden):
    """Garden plus 60 accounts on floor 5 (so the COPY path runs), three schemes and two rules."""
    for n in range(60):
        open_at(factory, garden.site, f"5{n:02d}", area=f"{20 + n}.{n % 100:02d}", floor="5")
    add_scheme(session, garden.site.id, FIXED)
    add_scheme(session, garden.site.id, PER_M2)
    add_scheme(session, garden.site.id, QUARTER)
    add_rule(session, garden.site.id, {"name": "公区电", "master": "EM-COMMON", "basis": "area",
                                       "accounts": [f"5{n:02d}" for n in range(60)], "mode": "deduct"})
    add_rule(session, garden.site.id, {"name": "电梯", "master": "EM-COMMON", "basis": "ratio",
                                       "accounts": {"101": 2, "102": "1.5", "103": 1}, "mode": "bill"})
    session.commit()
    return garden


def totals(result) -> tuple:
    return (result.charges_fen, result.apportioned_fen, result.items,
            sorted((ln["room"], ln["kind"], ln["code"], ln["amount"]) for ln in result.lines))


def test_preview_changes_nothing_and_shows_what_the_run_posts(session, busy):
    before = snapshot(session)
    preview = run_month_end(busy.site.id, "2026-04", preview=True, actor="test")
    assert snapshot(session) == before
    assert preview.entries == 0 and preview.items == 64 * 3 + 60 + 3
    run = run_month_end(busy.site.id, "2026-04", actor="test")
    assert totals(run) == totals(preview)
    assert preview.bills == run.bills == 3  # the bill-mode shares of 101, 102, 103 make a bill each
    assert run.entries == 64 * 3 + 60  # the ratio rule is bill mode: items only
    again = run_month_end(busy.site.id, "2026-04", preview=True, actor="test")  # a preview after the run
    assert totals(again) == totals(run)
    check_clean(session)


def test_a_second_run_posts_nothing_and_reports_the_same(session, busy):
    first = run_month_end(busy.site.id, "2026-04", actor="test")
    after_first = snapshot(session)
    second = run_month_end(busy.site.id, "2026-04", actor="test")
    assert second.entries == 0 and totals(second) == totals(first)
    assert second.bills == first.bills == 3  # the month's bills, made by the first run
    after = snapshot(session)
    assert after["balances"] == after_first["balances"]
    assert {k: v for k, v in after["counts"].items() if k != "audit_log"} == \
        {k: v for k, v in after_first["counts"].items() if k != "audit_log"}
    assert first.apportioned_fen == 10001 * 2
    check_clean(session)


def test_a_run_that_dies_halfway_is_finished_by_the_next(session, busy, monkeypatch):
    clean = run_month_end(busy.site.id, "2026-04", preview=True, actor="test")
    real = monthend._freeze
    calls = []

    def dies_on_the_third_step(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 3:
            real(*args, **kwargs)  # it posted ...
            raise KeyboardInterrupt("killed")  # ... and died before its commit
        return real(*args, **kwargs)
    monkeypatch.setattr(monthend, "_freeze", dies_on_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        run_month_end(busy.site.id, "2026-04", actor="test")
    monkeypatch.setattr(monthend, "_freeze", real)
    session.expire_all()
    done = set(session.scalars(select(MonthEndStep.step)))
    assert len(done) == 2 and "done" not in done
    check_clean(session)  # what was committed is whole
    resumed = run_month_end(busy.site.id, "2026-04", actor="test")
    assert resumed.entries == 64 + 60  # the steps left: the quarter's rent and the area rule
    assert totals(resumed) == totals(clean)
    keys = session.scalars(select(JournalEntry.idempotency_key)).all()
    assert len(keys) == len(set(keys))
    check_clean(session)


def test_two_runs_at_once_post_each_key_once(session, busy, pg_only):
    results, errors = [], []
    barrier = threading.Barrier(2)

    def go():
        try:
            barrier.wait()
            results.append(run_month_end(busy.site.id, "2026-04", actor="thread"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.entries for r in results)[1] > 0 and sum(r.entries for r in results) == 64 * 3 + 60
    assert totals(results[0]) == totals(results[1])
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.kind.in_(("charge", "apportionment")))) == 64 * 3 + 60
    check_clean(session)


def test_month_end_entries_are_dated_and_classified_for_finance(session, busy):
    """Finance splits income by item, each dated at its period's start (docs/reports.md)."""
    from core.reports import finance
    from core.reports.base import parse_range
    result = run_month_end(busy.site.id, "2026-04", actor="test")
    report = finance.income(session, busy.site, *parse_range("2026-03-31", "2026-04-30"), by="day")
    first, last = report.rows[1], report.rows[0]
    assert first.period == "2026-04-01" and last.income.get("total", 0) == 0
    posted = session.execute(select(MonthItem.code, func.sum(MonthItem.amount_fen)).where(
        MonthItem.entry_id.is_not(None)).group_by(MonthItem.code)).all()
    by_code = {("apportion" if c.startswith("apportion:") else c): int(v) for c, v in posted}
    assert {k: first.income.get(k, 0) for k in by_code} == by_code
    assert sum(by_code.values()) <= result.charges_fen + result.apportioned_fen

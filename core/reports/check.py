"""The rollups equal the sums they stand for: checks ``meterpay ledger check`` runs after the ledger's.

Each check returns a list of ``core.ledger.check.Problem`` (beancount's validation style); ``validate``
runs them all. Every comparison is one grouped query per side, so it stays a database scan, not a
Python loop:

- ``ledger_days_match_postings``: per tenant account, ledger account (revenue, cash, clearing,
  receivable) and entry kind (a reversal as the kind it undid), the rollup's fen and posting count
  equal the postings';
- ``usage_days_match_billed_usage``: per meter and account, quantity, fen and intervals equal the
  billed usage rows'; and every rollup row's periods add up to its quantity and fee;
- ``usage_months_match_usage_days``: each month row equals the sum of its day rows;
- ``reading_days_match_readings``: per meter, the readings and anomalies counted, the first and last
  reading times equal the stored readings'.

Which day a sum lands on follows ``core.reports.rollups`` and is tested there (and against reports
computed from the raw rows); here the amounts are proven.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import String, case, cast, func, literal, select
from sqlalchemy.orm import Session

from core.ledger.check import Problem
from core.models import JournalEntry, LedgerAccount, Posting, Reading
from core.models.billing import BilledUsage
from core.models.report import FEE_PARTS, ROLLUP_PERIODS, LedgerDay, ReadingDay, UsageDay, UsageMonth
from core.reports.rollups import ROLLED_KINDS

HINT = " (meterpay report rebuild recomputes the rollups from the raw rows)"


def _diff(name: str, subject, expected: dict, actual: dict, fields: tuple[str, ...]) -> list[Problem]:
    out = []
    for key in sorted(set(expected) | set(actual), key=str):
        e, a = expected.get(key), actual.get(key)
        e = e or dict.fromkeys(fields, 0)
        a = a or dict.fromkeys(fields, 0)
        wrong = [f"{f} {_show(a[f])} but the raw rows say {_show(e[f])}" for f in fields
                 if _norm(a[f]) != _norm(e[f])]
        if wrong:
            out.append(Problem(name, subject(key), "; ".join(wrong) + HINT))
    return out


def _norm(v):
    if isinstance(v, Decimal | float):  # quantities are exact to 1e-6 (SQLite sums them as floats)
        return Decimal(str(v)).quantize(Decimal("0.000001")).normalize()
    return v


def _show(v) -> str:
    return "none" if v is None else str(_norm(v) if isinstance(v, Decimal) else v)


def ledger_days_match_postings(session: Session) -> list[Problem]:
    reversed_kind = cast(JournalEntry.meta["reversed_kind"].as_string(), String)
    kind = case((JournalEntry.kind == "reversal", func.coalesce(reversed_kind, literal("reversal"))),
                else_=JournalEntry.kind)
    account = func.coalesce(JournalEntry.account_id, 0)
    raw = session.execute(
        select(account, Posting.ledger_account_id, kind, func.sum(Posting.amount_fen), func.count())
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
        .where(LedgerAccount.kind.in_(ROLLED_KINDS))
        .group_by(account, Posting.ledger_account_id, kind))
    expected = {(a, la, k): {"fen": int(s), "postings": int(n)} for a, la, k, s, n in raw}
    rolled = session.execute(
        select(LedgerDay.account_id, LedgerDay.ledger_account_id, LedgerDay.kind, func.sum(LedgerDay.amount_fen),
               func.sum(LedgerDay.postings))
        .group_by(LedgerDay.account_id, LedgerDay.ledger_account_id, LedgerDay.kind))
    actual = {(a, la, k): {"fen": int(s), "postings": int(n)} for a, la, k, s, n in rolled}
    codes = dict(session.execute(select(LedgerAccount.id, LedgerAccount.code)).all())
    return _diff("rollup-ledger", lambda k: f"account {k[0]} {codes.get(k[1], k[1])} {k[2]}", expected, actual,
                 ("fen", "postings"))


def usage_days_match_billed_usage(session: Session) -> list[Problem]:
    account = func.coalesce(BilledUsage.account_id, 0)
    raw = session.execute(
        select(BilledUsage.meter_id, account, func.sum(BilledUsage.quantity), func.sum(BilledUsage.amount_fen),
               func.count()).group_by(BilledUsage.meter_id, account))
    fields = ("quantity", "fee_fen", "intervals")
    expected = {(m, a): dict(zip(fields, (q, int(f), int(n)))) for m, a, q, f, n in raw}
    rolled = session.execute(
        select(UsageDay.meter_id, UsageDay.account_id, func.sum(UsageDay.quantity), func.sum(UsageDay.fee_fen),
               func.sum(UsageDay.intervals)).group_by(UsageDay.meter_id, UsageDay.account_id))
    actual = {(m, a): dict(zip(fields, (q, int(f), int(n)))) for m, a, q, f, n in rolled}
    problems = _diff("rollup-usage", lambda k: f"meter {k[0]} account {k[1]}", expected, actual, fields)
    for model, col in ((UsageDay, UsageDay.day), (UsageMonth, UsageMonth.month)):
        q_sum = sum((getattr(model, f"q_{p}") for p in ROLLUP_PERIODS[1:]), getattr(model, f"q_{ROLLUP_PERIODS[0]}"))
        f_sum = sum((getattr(model, f"f_{p}") for p in FEE_PARTS[1:]), getattr(model, f"f_{FEE_PARTS[0]}"))
        off = (func.abs(q_sum - model.quantity) > 0.0000005) | (f_sum != model.fee_fen)  # 1e-6: SQLite floats
        for m, a, d in session.execute(select(model.meter_id, model.account_id, col).where(off)):
            problems.append(Problem("rollup-usage", f"{model.__tablename__} meter {m} account {a} {d}",
                                    "the periods do not add up to the quantity and fee" + HINT))
    return problems


def usage_months_match_usage_days(session: Session) -> list[Problem]:
    from core.reports.rollups import USAGE_SUMS
    if session.get_bind().dialect.name == "postgresql":
        month = func.date_trunc("month", UsageDay.day)
    else:
        month = func.strftime("%Y-%m-01", UsageDay.day)
    sums = [func.sum(getattr(UsageDay, c)) for c in USAGE_SUMS]
    expected = {(m, a, str(mo)[:10]): dict(zip(USAGE_SUMS, vals)) for m, a, mo, *vals in session.execute(
        select(UsageDay.meter_id, UsageDay.account_id, month, *sums).group_by(UsageDay.meter_id, UsageDay.account_id,
                                                                              month))}
    actual = {(m, a, str(mo)[:10]): dict(zip(USAGE_SUMS, vals)) for m, a, mo, *vals in session.execute(
        select(UsageMonth.meter_id, UsageMonth.account_id, UsageMonth.month,
               *[getattr(UsageMonth, c) for c in USAGE_SUMS]))}
    return _diff("rollup-usage-month", lambda k: f"meter {k[0]} account {k[1]} {k[2][:7]}", expected, actual,
                 USAGE_SUMS)


def reading_days_match_readings(session: Session) -> list[Problem]:
    series = Reading.status.in_(("ok", "late"))
    raw = session.execute(
        select(Reading.meter_id, func.sum(case((series, 1), else_=0)),
               func.sum(case((Reading.status == "anomaly", 1), else_=0)),
               func.min(case((series, Reading.taken_at))), func.max(case((series, Reading.taken_at))))
        .group_by(Reading.meter_id))
    fields = ("readings", "anomalies", "first_at", "last_at")
    expected = {m: dict(zip(fields, (int(n), int(a), _utc(f), _utc(la)))) for m, n, a, f, la in raw}
    rolled = session.execute(
        select(ReadingDay.meter_id, func.sum(ReadingDay.readings), func.sum(ReadingDay.anomalies),
               func.min(ReadingDay.first_at), func.max(ReadingDay.last_at)).group_by(ReadingDay.meter_id))
    actual = {m: dict(zip(fields, (int(n), int(a), _utc(f), _utc(la)))) for m, n, a, f, la in rolled}
    return _diff("rollup-readings", lambda k: f"meter {k}", expected, actual, fields)


def _utc(value):
    """Times as the database gives them (aware on PostgreSQL, naive UTC text on SQLite) -> ISO in UTC."""
    if value is None:
        return None
    from datetime import UTC, datetime
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


CHECKS = [ledger_days_match_postings, usage_days_match_billed_usage, usage_months_match_usage_days,
          reading_days_match_readings]


def validate(session: Session) -> list[Problem]:
    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(session))
    return problems

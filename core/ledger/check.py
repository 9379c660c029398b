"""Ledger invariants as pure checks (beancount's validation style).

Each check takes a session and returns a list of ``Problem``; ``validate()`` runs every check
in ``CHECKS``. ``meterpay ledger check`` prints the problems and exits non-zero if any.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import JournalEntry, LedgerAccount, MeterCommand, Posting


@dataclass(frozen=True)
class Problem:
    check: str
    subject: str  # "entry 12", "wallet:7"
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.message}"


def unbalanced_entries(session: Session) -> list[Problem]:
    rows = session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key, func.sum(Posting.amount_fen))
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .group_by(JournalEntry.id, JournalEntry.idempotency_key)
        .having(func.sum(Posting.amount_fen) != 0))
    return [Problem("balanced", f"entry {r[0]}", f"postings of {r[1]!r} sum to {r[2]} fen, not 0")
            for r in rows]


def entries_without_postings(session: Session) -> list[Problem]:
    counts = (select(Posting.entry_id, func.count().label("n")).group_by(Posting.entry_id).subquery())
    rows = session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key, counts.c.n)
        .outerjoin(counts, counts.c.entry_id == JournalEntry.id)
        .where(func.coalesce(counts.c.n, 0) < 2))
    return [Problem("postings", f"entry {r[0]}", f"{r[1]!r} has {r[2] or 0} postings; an entry needs two or more")
            for r in rows]


def cached_balances(session: Session) -> list[Problem]:
    sums = (select(Posting.ledger_account_id, func.sum(Posting.amount_fen).label("total"))
            .group_by(Posting.ledger_account_id).subquery())
    rows = session.execute(
        select(LedgerAccount.code, LedgerAccount.balance_fen, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.ledger_account_id == LedgerAccount.id)
        .where(LedgerAccount.kind == "wallet")
        .where(LedgerAccount.balance_fen != func.coalesce(sums.c.total, 0)))
    return [Problem("cached-balance", r[0], f"cached balance {r[1]} fen but postings sum to {r[2]} fen")
            for r in rows]


def double_reversals(session: Session) -> list[Problem]:
    rows = session.execute(
        select(JournalEntry.reverses_id, func.count()).where(JournalEntry.reverses_id.is_not(None))
        .group_by(JournalEntry.reverses_id).having(func.count() > 1))
    return [Problem("reversal", f"entry {r[0]}", f"reversed {r[1]} times") for r in rows]


def meter_credit_matches_commands(session: Session) -> list[Problem]:
    """Prepaid-meter money: every recharge the meter confirmed of wallet money (a command keyed
    ``meter-recharge:<entry>``) has exactly one ``meter-credit:<command>`` entry of its amount,
    every such entry belongs to one, and ``clearing:meter-credit`` holds their sum."""
    commands = {cid: int((params or {}).get("amount_fen") or 0) for cid, params in session.execute(
        select(MeterCommand.id, MeterCommand.params).where(MeterCommand.kind == "recharge",
                                                           MeterCommand.state == "confirmed",
                                                           MeterCommand.idempotency_key.like("meter-recharge:%")))}
    clearing = session.scalar(select(LedgerAccount.id).where(LedgerAccount.code == "clearing:meter-credit"))
    credits: dict[str, int] = {}
    total = 0
    if clearing is not None:
        for key, amount in session.execute(
                select(JournalEntry.idempotency_key, Posting.amount_fen)
                .join(Posting, Posting.entry_id == JournalEntry.id)
                .where(Posting.ledger_account_id == clearing)):
            credits[key] = credits.get(key, 0) + int(amount)
            total += int(amount)
    problems = []
    for cid, amount in sorted(commands.items()):
        got = credits.get(f"meter-credit:{cid}")
        if got is None:
            problems.append(Problem("meter-credit", f"command {cid}",
                                    f"the meter confirmed {amount} fen of wallet money but no meter-credit entry "
                                    "moved it from the wallet (meterpay's meter-side sweep posts it)"))
        elif got != amount:
            problems.append(Problem("meter-credit", f"command {cid}",
                                    f"meter credit of {got} fen for a confirmed recharge of {amount} fen"))
    for key, got in sorted(credits.items()):
        cid = key.removeprefix("meter-credit:")
        if key.startswith("meter-credit:") and cid.isdigit() and int(cid) in commands:
            continue
        if key.startswith("reversal:") or not got:
            continue
        problems.append(Problem("meter-credit", key, f"{got} fen on clearing:meter-credit without a confirmed "
                                                     "meter recharge behind it"))
    expected = sum(commands.values())
    if total != expected:
        problems.append(Problem("meter-credit", "clearing:meter-credit",
                                f"holds {total} fen; confirmed meter recharges of wallet money sum to {expected} fen"))
    return problems


CHECKS = [unbalanced_entries, entries_without_postings, cached_balances, double_reversals,
          meter_credit_matches_commands]


def validate(session: Session) -> list[Problem]:
    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(session))
    return problems


# --- tariffs of the right unit (issue 17) --------------------------------------------------
# Kept apart from CHECKS above on purpose: one line each to add, below.

def usage_under_wrong_unit(session: Session) -> list[Problem]:
    """No interval was priced with a plan of another unit than its meter's (kWh for electricity,
    m3 for water). Reads ``billed_usage.plan_id`` (set from migration 0004 on)."""
    from sqlalchemy import case

    from core.models import BilledUsage, Meter, TariffPlan
    unit = case((Meter.kind == "water", "m3"), else_="kWh")
    rows = session.execute(
        select(BilledUsage.id, Meter.serial, Meter.kind, TariffPlan.name, TariffPlan.unit)
        .join(Meter, Meter.id == BilledUsage.meter_id).join(TariffPlan, TariffPlan.id == BilledUsage.plan_id)
        .where(TariffPlan.unit != unit).order_by(BilledUsage.id))
    return [Problem("plan-unit", f"billed_usage {r[0]}", f"{r[2]} meter {r[1]} was priced with {r[3]!r} in {r[4]}")
            for r in rows]


def plans_of_wrong_unit(session: Session) -> list[Problem]:
    """No account holds an electricity plan that is not in kWh or a water plan not in m3, and no
    meter's own plan is of another unit than its kind's (billing would not price with them)."""
    from core.models import Account, Meter, TariffPlan
    problems = []
    for column, utility, unit in ((Account.electricity_plan_id, "electricity", "kWh"),
                                  (Account.water_plan_id, "water", "m3")):
        rows = session.execute(select(Account.id, TariffPlan.name, TariffPlan.unit)
                               .join(TariffPlan, TariffPlan.id == column).where(TariffPlan.unit != unit)
                               .order_by(Account.id))
        problems += [Problem("plan-unit", f"account {r[0]}", f"its {utility} plan {r[1]!r} is priced in {r[2]}")
                     for r in rows]
    for kind, unit in (("electricity", "kWh"), ("water", "m3")):
        rows = session.execute(select(Meter.serial, TariffPlan.name, TariffPlan.unit)
                               .join(TariffPlan, TariffPlan.id == Meter.tariff_plan_id)
                               .where(Meter.kind == kind, TariffPlan.unit != unit).order_by(Meter.id))
        problems += [Problem("plan-unit", f"meter {r[0]}", f"its own plan {r[1]!r} is priced in {r[2]}, not {unit}")
                     for r in rows]
    return problems


CHECKS += [usage_under_wrong_unit, plans_of_wrong_unit]


# --- month-end items (issue 12) -------------------------------------------------------------

def month_items_match_entries(session: Session) -> list[Problem]:
    """Every deduct-mode month-end item (``month_items``) has its entry, under the item's key, moving
    the item's amount into the item's revenue account; bill-mode items have none at month end."""
    from core.models import MonthItem
    revenue = select(Posting.entry_id, func.sum(Posting.amount_fen).label("fen"), LedgerAccount.code) \
        .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id) \
        .where(LedgerAccount.kind == "revenue").group_by(Posting.entry_id, LedgerAccount.code).subquery()
    rows = session.execute(
        select(MonthItem.key, MonthItem.mode, MonthItem.amount_fen, MonthItem.revenue_code, MonthItem.entry_id,
               JournalEntry.idempotency_key, revenue.c.fen, revenue.c.code)
        .outerjoin(JournalEntry, JournalEntry.id == MonthItem.entry_id)
        .outerjoin(revenue, (revenue.c.entry_id == MonthItem.entry_id) & (revenue.c.code == MonthItem.revenue_code))
        .where((MonthItem.entry_id.is_not(None)) | ((MonthItem.mode == "deduct") & (MonthItem.amount_fen > 0))))
    problems = []
    for key, mode, amount, code, entry_id, entry_key, fen, _code in rows:
        if entry_id is None:
            problems.append(Problem("month-item", key, f"a deduct item of {amount} fen has no entry"))
        elif entry_key != key:
            problems.append(Problem("month-item", key, f"points at entry {entry_id} of key {entry_key!r}"))
        elif mode != "deduct":
            problems.append(Problem("month-item", key, f"a {mode}-mode item has a month-end entry {entry_id}"))
        elif int(fen or 0) != amount:
            problems.append(Problem("month-item", key, f"item of {amount} fen, entry {entry_id} moved {fen or 0} fen "
                                                       f"into {code}"))
    return problems


CHECKS += [month_items_match_entries]
# --- postpaid bills (issue 12) ---------------------------------------------------------------

def bills_match_receivable(session: Session) -> list[Problem]:
    """Per tenant account, ``receivable:bills`` holds minus what its confirmed bills still owe (total
    less payments and credit notes), and every confirmed bill of a positive total has its entry."""
    from core.models import Bill
    raw: dict[int | None, int] = dict(session.execute(
        select(JournalEntry.account_id, func.sum(Posting.amount_fen))
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
        .where(LedgerAccount.code == "receivable:bills").group_by(JournalEntry.account_id)).all())
    owed: dict[int | None, int] = dict(session.execute(
        select(Bill.account_id, func.sum(Bill.total_fen - Bill.paid_fen - Bill.credited_fen))
        .where(Bill.kind == "bill", Bill.state != "draft").group_by(Bill.account_id)).all())
    problems = [Problem("bills", f"account {a}", f"receivable:bills holds {int(raw.get(a) or 0)} fen; "
                                                 f"its confirmed bills owe {int(owed.get(a) or 0)} fen")
                for a in sorted(set(raw) | set(owed), key=lambda x: x or 0)
                if int(raw.get(a) or 0) != -int(owed.get(a) or 0)]
    missing = session.scalars(select(Bill.bill_no).where(Bill.kind == "bill", Bill.state != "draft",
                                                         Bill.total_fen > 0, Bill.entry_id.is_(None)))
    problems += [Problem("bills", f"bill {no}", "confirmed without its receivable entry") for no in missing]
    return problems


CHECKS += [bills_match_receivable]

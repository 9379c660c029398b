"""Postpaid bills in the ledger (issue 12): the receivable a confirmed bill posts, its payments
and its credit notes. The money verbs of ``core.bills``; nothing else posts for bills.

Chart: one system account ``receivable:bills`` holds what tenants owe on confirmed bills, signed
like a wallet (the tenant's side): a confirmed bill takes it down by the bill's total, a payment or
a credit note brings it back up. Every entry names the tenant account (``account_id``), so
``ledger_days`` splits it per tenant, and carries ``meta.bill_no``.

| what | key | kind | legs |
|---|---|---|---|
| confirm | ``bill:<bill no>`` | consumption | receivable -total; ``revenue:<...>`` +each line's share |
| desk payment | the form's key | payment | ``cash:desk`` or ``cash:transfer`` -x; receivable +x |
| from the wallet | the form's key | payment | wallet -x (never below 0); receivable +x |
| online payment | ``pay:<channel>:<txn id>`` | payment | ``clearing:<channel>`` -x; receivable +open; wallet +rest |
| credit note | ``credit:<credit no>`` | adjustment | ``revenue:<...>`` -x; receivable +min(x, open); wallet +rest |

A confirmed bill is never edited: only its ``paid_fen``, ``credited_fen``, ``state`` and
``paid_at`` move, under its row lock, in the transaction that posts the entry that moved them, and
only when that entry was new. So a repeated key (a duplicate callback, a form sent twice) changes
nothing. Money beyond what a bill still owes (an online payment that arrives after the bill was
paid at the desk, a credit note on a paid bill) goes to the tenant's wallet, never lost and never
counted twice.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import audit, signals
from core.bulk_sql import copy_lines, copy_text, next_ids
from core.db import hold_write_lock, is_postgres, utcnow
from core.errors import Conflict, InsufficientFunds, NotFound, ValidationError
from core.ledger import journal as ledger
from core.ledger.guards import check_amount
from core.ledger.journal import Leg, PostResult
from core.ledger.money import format_fen
from core.models import Bill
from core.models.bill import OPEN_STATES
from core.reports import rollups  # issue 15: ledger_days, written with the postings

RECEIVABLE = "receivable:bills"
DESK_METHODS = {"cash": "cash:desk", "transfer": "cash:transfer"}
PAY_SOURCES = ("cash", "transfer", "wallet", "wechat", "alipay")
# Below this many bills one confirm posts entry by entry (journal.post); above, through COPY.
COPY_THRESHOLD = 50


@dataclass(frozen=True)
class Receivable:
    """A bill to post: ``revenue`` maps ledger account codes (``revenue:electricity``, ...) to fen > 0
    whose sum is the bill's total."""

    bill_no: str
    account_id: int
    revenue: dict[str, int]
    meta: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"bill:{self.bill_no}"

    @property
    def total_fen(self) -> int:
        return sum(self.revenue.values())


def post_receivables(session: Session, items: Sequence[Receivable], *, actor: str = "system",
                     front: str = "system") -> dict[str, int]:
    """Post each bill's receivable once, under ``bill:<bill no>``; returns bill no -> entry id (the
    existing entry for a bill posted before, which moves nothing). The caller holds the bills' row
    locks and sets their state. Raises ValidationError for a bill whose total is not positive or a
    revenue code that is not ``revenue:...``; nothing is written then."""
    for it in items:
        if it.total_fen <= 0 or any(not isinstance(v, int) or v < 0 for v in it.revenue.values()):
            raise ValidationError(f"bill {it.bill_no}: lines must be non-negative fen and the total positive")
        if any(not code.startswith("revenue:") for code in it.revenue):
            raise ValidationError(f"bill {it.bill_no}: lines are credited to revenue accounts only")
    if not items:
        return {}
    receivable = ledger.system_account(session, RECEIVABLE)
    accounts = {code: ledger.system_account(session, code).id
                for code in sorted({c for it in items for c in it.revenue})}
    if len(items) < COPY_THRESHOLD or not is_postgres(session):
        out = {}
        for it in items:
            legs = [Leg(receivable.id, -it.total_fen)] + [Leg(accounts[c], fen) for c, fen in sorted(it.revenue.items())
                                                          if fen]
            res = ledger.post(session, key=it.key, kind="consumption", legs=legs, account_id=it.account_id,
                              memo=f"bill {it.bill_no}", actor=actor, front=front,
                              meta={**it.meta, "bill_no": it.bill_no})
            out[it.bill_no] = res.entry_id
        return out
    return _copy_receivables(session, items, receivable.id, accounts, actor=actor, front=front)


def _copy_receivables(session: Session, items: Sequence[Receivable], receivable_id: int, accounts: dict[str, int],
                      *, actor: str, front: str) -> dict[str, int]:
    conn = session.connection()
    keys = [it.key for it in items]
    done = {k: eid for k, eid in conn.execute(
        text("SELECT idempotency_key, id FROM journal_entries WHERE idempotency_key = ANY(:k)"), {"k": keys})}
    out = {k.split(":", 1)[1]: eid for k, eid in done.items()}
    todo = [it for it in items if it.key not in done]
    if not todo:
        return out
    ids = next_ids(session, "journal_entries", len(todo))
    now = utcnow()
    t = copy_text
    who = f"{t(actor)}\t{t(front)}"
    entry_lines = [f"{eid}\t{t(it.key)}\tconsumption\t{it.account_id}\t{t('bill ' + it.bill_no)}\t{who}\t"
                   f"{t(json.dumps({**it.meta, 'bill_no': it.bill_no}))}\t{now.isoformat()}\n"
                   for eid, it in zip(ids, todo)]
    copy_lines(session, "COPY journal_entries (id, idempotency_key, kind, account_id, memo, actor, front, meta, "
                        "created_at) FROM STDIN", entry_lines)
    posting_lines = []
    for eid, it in zip(ids, todo):
        posting_lines.append(f"{eid}\t{receivable_id}\t{-it.total_fen}\n")
        posting_lines.extend(f"{eid}\t{accounts[c]}\t{fen}\n" for c, fen in sorted(it.revenue.items()) if fen)
    copy_lines(session, "COPY postings (entry_id, ledger_account_id, amount_fen) FROM STDIN", posting_lines)
    _roll(session, todo, receivable_id, accounts, now)
    out.update({it.bill_no: eid for eid, it in zip(ids, todo)})
    return out


def _roll(session: Session, items: Sequence[Receivable], receivable_id: int, accounts: dict[str, int],
          now: datetime) -> None:
    """``ledger_days`` for COPY-posted receivables, dated as ``journal.post`` dates a bill's entry
    (``rollups.entry_day``: the first day of the bill's period)."""
    if not rollups.ENABLED:
        return
    sites = rollups.sites_of(session, [it.account_id for it in items])
    acc = rollups.LedgerRows()
    for it in items:
        site_id, tz_name = sites.get(it.account_id, (None, None))
        day = rollups.entry_day("consumption", it.key, it.meta, now, rollups.zone(tz_name))
        acc.add(it.account_id, day, receivable_id, "consumption", site_id, -it.total_fen)
        for code, fen in it.revenue.items():
            if fen:
                acc.add(it.account_id, day, accounts[code], "consumption", site_id, fen)
    acc.write(session)


def lock_bill(session: Session, bill_no: str) -> Bill:
    """The bill, locked FOR UPDATE and read fresh; NotFound if there is none. (On SQLite the unit takes
    the database's write lock first: two payments of one bill must not both add to the old paid_fen.)"""
    hold_write_lock(session)
    bill = session.scalar(select(Bill).where(Bill.bill_no == bill_no).with_for_update()
                          .execution_options(populate_existing=True))
    if bill is None:
        raise NotFound(f"no bill {bill_no}")
    return bill


def _after_money(bill: Bill, to_receivable: int, *, paid: bool) -> None:
    if paid:
        bill.paid_fen = int(bill.paid_fen or 0) + to_receivable
    else:
        bill.credited_fen = int(bill.credited_fen or 0) + to_receivable
    if bill.open_fen == 0:
        bill.state = "paid"
        bill.paid_at = bill.paid_at or utcnow()
    elif bill.paid_fen or bill.credited_fen:
        bill.state = "partly_paid"


def pay_bill(session: Session, bill_no: str, amount_fen: int, *, source: str, key: str, actor: str = "system",
             front: str = "system", order_no: str | None = None, provider_txn_id: str | None = None,
             memo: str = "") -> PostResult:
    """Money received for a confirmed bill, once per ``key``. Call inside one transaction.

    ``source``: ``cash`` or ``transfer`` (at the desk, into ``cash:desk`` / ``cash:transfer``),
    ``wallet`` (from the tenant's credit; never below zero), or ``wechat`` / ``alipay`` (a provider's
    CONFIRMED payment of the order ``order_no``, key ``pay:<channel>:<provider txn id>``; only
    ``core.payments.orders.settle`` calls it so).

    At the desk and from the wallet the amount may be part of what is owed (a partial payment) but
    not more (ValidationError); an online payment is taken whole: what the bill still owes goes to
    the receivable and any rest to the tenant's wallet (a bill paid meanwhile at the desk, a second
    order for the same bill), so nothing is credited twice and nothing is lost.

    Returns PostResult (``created=False``: the key was posted before and nothing changed). Raises
    NotFound (no bill), Conflict (a draft, a paid bill, a credit note; online: a draft or credit
    note only), ValidationError (amount, source), InsufficientFunds (a wallet without the credit).
    Nothing is written when it raises.
    """
    if source not in PAY_SOURCES:
        raise ValidationError(f"source: must be one of {', '.join(PAY_SOURCES)}", field="source")
    online = source in ("wechat", "alipay")
    if online:
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
            raise ValidationError("payment amount must be positive")
    else:
        check_amount(amount_fen)
    bill = lock_bill(session, bill_no)
    done = ledger.find_entry(session, key)
    if done is not None:
        return PostResult(done.id, False)
    if bill.kind != "bill" or bill.state == "draft":
        raise Conflict(f"bill {bill_no} is {'a credit note' if bill.kind != 'bill' else 'a draft'}; "
                       "only a confirmed bill is paid")
    owed = bill.open_fen
    if not online and owed == 0:
        raise Conflict(f"bill {bill_no} is paid")
    if not online and amount_fen > owed:
        raise ValidationError(f"amount: {format_fen(amount_fen)} is more than the {format_fen(owed)} "
                              f"bill {bill_no} still owes", field="amount")
    to_receivable = min(amount_fen, owed)
    rest = amount_fen - to_receivable
    receivable = ledger.system_account(session, RECEIVABLE)
    wallet = ledger.wallet_of(session, bill.account_id)
    legs = []
    floor = None
    if source == "wallet":
        legs.append(Leg(wallet.id, -amount_fen))
        floor = {wallet.id: 0}
    else:
        counter = DESK_METHODS.get(source) or f"clearing:{source}"
        legs.append(Leg(ledger.system_account(session, counter).id, -amount_fen))
        if rest:
            legs.append(Leg(wallet.id, rest))
    if to_receivable:
        legs.append(Leg(receivable.id, to_receivable))
    meta: dict = {"bill_no": bill_no, "channel": source, "to_bill_fen": to_receivable}
    if order_no:
        meta.update(order_no=order_no, provider_txn_id=provider_txn_id)
    try:
        result = ledger.post(session, key=key, kind="payment", legs=legs, account_id=bill.account_id,
                             memo=memo or f"bill {bill_no} paid ({source})", actor=actor, front=front, meta=meta,
                             min_balance_fen=floor)
    except InsufficientFunds:
        raise InsufficientFunds(f"the wallet does not hold {format_fen(amount_fen)} to pay bill {bill_no}") from None
    if result.created:
        _after_money(bill, to_receivable, paid=True)
        audit.record(session, actor=actor, front=front, action="bill_payment", site_id=bill.site_id,
                     account_id=bill.account_id, bill_no=bill_no, amount=format_fen(amount_fen), channel=source,
                     to_wallet=format_fen(rest) if rest else None, order_no=order_no, entry_id=result.entry_id)
        wallet_delta = -amount_fen if source == "wallet" else rest
        if wallet_delta:
            signals.emit(session, "balance_changed", account_id=bill.account_id,
                         entry_kind="payment" if source == "wallet" else "recharge", delta_fen=wallet_delta,
                         entry_id=result.entry_id)
    session.flush()
    return result


def post_credit_note(session: Session, bill_no: str, credit_no: str, amount_fen: int, revenue_code: str, *,
                     reason: str, actor: str = "system", front: str = "system") -> tuple[PostResult, int, int]:
    """Credit (part of) a confirmed bill, once per ``credit_no`` (key ``credit:<credit no>``).

    Takes ``amount_fen`` back from ``revenue_code`` (the line's revenue account); what the bill still
    owes goes down by up to ``amount_fen`` (its receivable), and any rest (the bill was paid already)
    is credited to the tenant's wallet. Returns (PostResult, fen to the receivable, fen to the
    wallet). The caller checks the amount against the line it corrects and records the credit note.
    Raises NotFound, Conflict (a draft or a credit note), ValidationError (amount, reason, code)."""
    check_amount(amount_fen)
    if not reason or not reason.strip():
        raise ValidationError("a credit note needs a reason", field="reason")
    if not revenue_code.startswith("revenue:"):
        raise ValidationError("a credit note takes back revenue", field="revenue_code")
    bill = lock_bill(session, bill_no)
    key = f"credit:{credit_no}"
    done = ledger.find_entry(session, key)
    if done is not None:
        return PostResult(done.id, False), 0, 0
    if bill.kind != "bill" or bill.state not in (*OPEN_STATES, "paid"):
        raise Conflict(f"bill {bill_no} is not a confirmed bill; a draft is regenerated, not credited")
    to_receivable = min(amount_fen, bill.open_fen)
    rest = amount_fen - to_receivable
    legs = [Leg(ledger.system_account(session, revenue_code).id, -amount_fen)]
    if to_receivable:
        legs.append(Leg(ledger.system_account(session, RECEIVABLE).id, to_receivable))
    if rest:
        legs.append(Leg(ledger.wallet_of(session, bill.account_id).id, rest))
    result = ledger.post(session, key=key, kind="adjustment", legs=legs, account_id=bill.account_id,
                         memo=f"credit note {credit_no} on bill {bill_no}: {reason.strip()}", actor=actor, front=front,
                         meta={"bill_no": bill_no, "credit_no": credit_no})
    if result.created:
        _after_money(bill, to_receivable, paid=False)
        audit.record(session, actor=actor, front=front, action="bill_credit", site_id=bill.site_id,
                     account_id=bill.account_id, bill_no=bill_no, credit_no=credit_no,
                     amount=format_fen(amount_fen), reason=reason.strip(), entry_id=result.entry_id)
        if rest:
            signals.emit(session, "balance_changed", account_id=bill.account_id, entry_kind="adjustment",
                         delta_fen=rest, entry_id=result.entry_id)
    session.flush()
    return result, to_receivable, rest

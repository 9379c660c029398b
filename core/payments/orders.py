"""Tenant recharges through a payment provider: orders, settlement exactly once, refunds.

An order is a row before anyone pays (``create_order``). Whatever tells us it was paid — a
callback, the pending-order query job, a late or duplicated callback — ends in
``settle(session, report)``, which locks the order row, checks the report against the order
(amount, currency, app id, merchant), and credits the wallet through
``cashdesk.credit_payment`` under the key ``pay:<channel>:<provider txn id>``. A second report
of the same payment finds the order paid (and the ledger key taken) and changes nothing. A
report that disagrees with the order flags it for a manager and credits nothing.

A WeChat Pay order is made with the app id of the front the tenant pays from (the mini-program's or
the official account's, ``create_order(front=, app_id=)``); a report of it must name that app id, or the
order is flagged and nothing is credited.

Refunds are started by a manager (``start_refund``): the wallet is debited at once under
``refund:<channel>:<refund no>`` so the money cannot be spent meanwhile; the provider is then
asked to pay it back (``apply_refund_report`` records each answer). A provider's answer has three
values, and unknown is never taken for refused: only a definitive refusal (or CLOSED) reverses the
debit in the ledger; an unknown outcome is queried and sent again under the same refund number until
the provider says; WeChat's ABNORMAL waits for a manager (``resolve_abnormal_refund``).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from core import audit, config, signals
from core.config import get_settings
from core.db import get_existing, hold_write_lock
from core.errors import Conflict, NotFound, ValidationError
from core.jobs import enqueue_after_commit
from core.ledger import cashdesk, receivables
from core.ledger.guards import check_amount, get_account
from core.ledger.money import format_fen
from core.models import JournalEntry, PaymentOrder, PaymentReconciliation, PaymentRefund
from core.models.payment import OPEN_REFUND_STATES, PAY_FRONTS
from core.payments.provider import PaymentReport, RefundReport, StatementLine
from core.utils import utcnow

CHANNELS = ("wechat", "alipay")
OPEN_STATES = ("created", "pending")
PAID_STATES = ("paid", "refunding", "refunded")
# Sends a requested refund to its provider (named by path: core does not import the fronts).
REFUND_SENDER = "miniapp_api.jobs.send_refund"


@dataclass(frozen=True)
class Settlement:
    """What ``settle`` did. outcome: credited | duplicate | flagged | closed | pending | ignored."""

    outcome: str
    order_no: str
    state: str
    entry_id: int | None = None


def new_order_no(prefix: str = "MP") -> str:
    """26 letters and digits: WeChat wants 6-32 of [A-Za-z0-9_-*|], Alipay up to 64."""
    return f"{prefix}{utcnow():%Y%m%d%H%M%S}{secrets.token_hex(5).upper()}"


def create_order(session: Session, account_id: int, amount_fen: int, channel: str, *,
                 tenant_id: int | None = None, openid: str | None = None, front: str = "miniapp",
                 app_id: str | None = None, bill_no: str | None = None) -> PaymentOrder:
    """A recharge order in state ``created``; nothing is owed or credited yet.

    ``bill_no``: the order pays that postpaid bill (``core.bills.service.start_order`` checks it and
    sets the amount); its confirmed payment goes to the bill's receivable, not the wallet.

    ``front``: where the tenant pays from ("miniapp" | "official_account"); ``app_id``: the provider app
    id the order is made with (``provider.app_id_for(front)``), which every report of it must name.
    """
    if channel not in CHANNELS:
        raise ValidationError(f"channel: must be one of {', '.join(CHANNELS)}", field="channel")
    if front not in PAY_FRONTS:
        raise ValidationError(f"front: must be one of {', '.join(PAY_FRONTS)}", field="front")
    account = get_account(session, account_id)
    check_amount(amount_fen)
    order = PaymentOrder(order_no=new_order_no(), account_id=account.id, tenant_id=tenant_id or account.tenant_id,
                         openid=openid, channel=channel, amount_fen=amount_fen, currency="CNY", state="created",
                         refunded_fen=0, provider_data={}, front=front, app_id=app_id, bill_no=bill_no)
    session.add(order)
    session.flush()
    return order


def mark_pending(session: Session, order: PaymentOrder, provider_data: dict) -> None:
    """The provider accepted the order (prepay id / QR code issued)."""
    if order.state == "created":
        order.state = "pending"
    order.provider_data = {**(order.provider_data or {}), **provider_data}


def _lock(session: Session, column, value: str, what: str):
    """The row whose unique ``column`` is ``value``, locked FOR UPDATE and read fresh; NotFound if none.
    (SQLAlchemy leaves FOR UPDATE out on SQLite: there the unit takes the database's write lock first.)"""
    hold_write_lock(session)
    row = session.scalar(select(column.class_).where(column == value).with_for_update()
                         .execution_options(populate_existing=True))
    if row is None:
        raise NotFound(f"no {what} {value}")
    return row


def lock_order(session: Session, order_no: str) -> PaymentOrder:
    return _lock(session, PaymentOrder.order_no, order_no, "order")


def get_order(session: Session, order_no: str) -> PaymentOrder:
    order = session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == order_no))
    if order is None:
        raise NotFound(f"no order {order_no}")
    return order


def flag(session: Session, order: PaymentOrder, reason: str, *, actor: str = "system",
         front: str = "system", detail: dict | None = None) -> None:
    """Set an order aside for a manager; nothing is credited."""
    order.state = "flagged"
    order.flag_reason = reason[:200]
    audit.record(session, actor=actor, front=front, action="payment_flagged", account_id=order.account_id,
                 order_no=order.order_no, reason=reason, **(detail or {}))


def _mismatch(order: PaymentOrder, report: PaymentReport, expect_app_id: str | None,
              expect_merchant_id: str | None) -> str | None:
    if report.channel != order.channel:
        return f"channel {report.channel} does not match order channel {order.channel}"
    if report.amount_fen != order.amount_fen:
        got = "?" if report.amount_fen is None else format_fen(report.amount_fen)
        return f"amount {got} does not match order amount {format_fen(order.amount_fen)}"
    if (report.currency or "CNY") != order.currency:
        return f"currency {report.currency} does not match {order.currency}"
    expected_app_id = order.app_id or expect_app_id  # an order from before app ids were recorded: the provider's
    if expected_app_id and report.app_id != expected_app_id:
        return f"app id {report.app_id} does not match the order's app id {expected_app_id}"
    if expect_merchant_id and report.merchant_id != expect_merchant_id:
        return f"merchant {report.merchant_id} is not ours"
    if not report.txn_id:
        return "paid without a provider transaction id"
    return None


def settle(session: Session, report: PaymentReport, *, expect_app_id: str | None = None,
           expect_merchant_id: str | None = None, source: str = "callback") -> Settlement:
    """Apply a provider's report of an order, exactly once. Call inside one transaction.

    A paid report is credited only when it agrees with the order: amount, currency, merchant, and the
    app id the order was made with (``expect_app_id`` only for orders that recorded none); otherwise
    the order is flagged for a manager and nothing is credited.
    """
    order = lock_order(session, report.order_no)
    front = "api" if source == "callback" else "job"
    if report.state != "paid":
        if report.state in ("closed", "failed") and order.state in OPEN_STATES:
            order.state = "closed"
            return Settlement("closed", order.order_no, order.state)
        return Settlement("pending" if report.state == "pending" else "ignored", order.order_no, order.state)

    if order.state in PAID_STATES:
        if report.txn_id and order.provider_txn_id and report.txn_id != order.provider_txn_id:
            audit.record(session, actor=f"{report.channel}:{source}", front=front, action="payment_second_txn",
                         account_id=order.account_id, order_no=order.order_no, txn_id=report.txn_id)
        return Settlement("duplicate", order.order_no, order.state)
    if order.state == "flagged":
        return Settlement("flagged", order.order_no, order.state)

    problem = _mismatch(order, report, expect_app_id, expect_merchant_id)
    if problem:
        flag(session, order, problem, actor=f"{report.channel}:{source}", front=front,
             detail={"txn_id": report.txn_id, "reported_amount_fen": report.amount_fen})
        return Settlement("flagged", order.order_no, order.state)
    assert report.txn_id  # _mismatch refuses a paid report without one

    order.paid_at = report.paid_at or utcnow()  # before the entry: reports date a payment by it (issue 15)
    if order.bill_no:  # issue 12: a bill's order pays the bill (the rest, if any, goes to the wallet)
        result = receivables.pay_bill(session, order.bill_no, order.amount_fen, source=order.channel,
                                      key=f"pay:{order.channel}:{report.txn_id}", order_no=order.order_no,
                                      provider_txn_id=report.txn_id, actor=f"{report.channel}:{source}", front=front)
    else:
        result = cashdesk.credit_payment(session, order.account_id, order.amount_fen, channel=order.channel,
                                         provider_txn_id=report.txn_id, order_no=order.order_no,
                                         actor=f"{report.channel}:{source}", front=front)
    order.state = "paid"
    order.provider_txn_id = report.txn_id
    order.provider_data = {**(order.provider_data or {}), "settled_by": source}
    session.flush()
    signals.emit(session, "payment_settled", order_id=order.id, channel=order.channel, amount_fen=order.amount_fen)
    return Settlement("credited" if result.created else "duplicate", order.order_no, order.state, result.entry_id)


def pending_orders(session: Session, *, older_than: timedelta, newer_than: timedelta = timedelta(days=2),
                   limit: int = 200) -> list[str]:
    """Order numbers still waiting for a callback after ``older_than`` (the query job asks about them)."""
    now = utcnow()
    rows = session.scalars(select(PaymentOrder.order_no).where(
        PaymentOrder.state == "pending", PaymentOrder.created_at <= now - older_than,
        PaymentOrder.created_at >= now - newer_than).order_by(PaymentOrder.id).limit(limit))
    return list(rows)


# --- refunds ----------------------------------------------------------------------------

def start_refund(session: Session, order_no: str, amount_fen: int, *, actor: str, front: str = "admin",
                 reason: str = "") -> PaymentRefund:
    """A manager refunds (part of) a paid order: the wallet is debited now, the provider is asked after commit."""
    check_amount(amount_fen)
    order = lock_order(session, order_no)
    if order.bill_no:
        raise Conflict(f"order {order_no} paid bill {order.bill_no}; a bill is corrected with a credit note")
    if order.state not in ("paid", "refunding", "refunded"):
        raise Conflict(f"order {order_no} is {order.state}; only a paid order can be refunded")
    left = order.amount_fen - order.refunded_fen
    if amount_fen > left:
        raise ValidationError(f"amount: {format_fen(amount_fen)} is more than the {format_fen(left)} "
                              f"left to refund on order {order_no}", field="amount")
    refund_no = new_order_no("RF")
    result = cashdesk.refund(session, order.account_id, amount_fen, key=f"refund:{order.channel}:{refund_no}",
                             actor=actor, front=front, to=f"clearing:{order.channel}", allow_closed=True,
                             memo=f"{order.channel} refund {refund_no} of order {order_no}")
    refund = PaymentRefund(refund_no=refund_no, order_id=order.id, amount_fen=amount_fen, state="requested",
                           reason=(reason or "")[:200], requested_by=actor, entry_id=result.entry_id,
                           provider_data={})
    session.add(refund)
    order.refunded_fen += amount_fen
    order.state = "refunding"
    session.flush()
    enqueue_after_commit(session, REFUND_SENDER, refund.refund_no, queue="payments")
    return refund


def lock_refund(session: Session, refund_no: str) -> PaymentRefund:
    return _lock(session, PaymentRefund.refund_no, refund_no, "refund")


def stuck_after() -> timedelta:
    return timedelta(hours=config.get("METERPAY_REFUND_STUCK_HOURS"))


def apply_refund_report(session: Session, report: RefundReport, *, source: str = "callback") -> str:
    """Record what the provider says about a refund, once. Returns the refund's state. Call inside one
    transaction.

    - succeeded: final; the debit stands.
    - failed (a definitive refusal, CLOSED): final; the wallet debit is reversed (a new entry) -- the only
      report that gives money back.
    - pending / unknown: the state is set (never over ``abnormal``); unknown counts an attempt and keeps the
      error. Nothing moves. Still open after METERPAY_REFUND_STUCK_HOURS: one ``refund_stuck`` audit record.
    - abnormal (WeChat ABNORMAL): set aside for a manager (audit ``refund_abnormal``); the order stays
      ``refunding``; nothing moves until the provider reports SUCCESS/CLOSED or a manager resolves it.
    A report about a refund already final changes nothing.
    """
    refund = lock_refund(session, report.refund_no)
    if refund.state in ("succeeded", "failed"):
        return refund.state
    order = get_existing(session, PaymentOrder, refund.order_id)
    actor = f"{report.channel}:{source}"
    if report.provider_refund_id and not refund.provider_refund_id:
        refund.provider_refund_id = report.provider_refund_id
    refund.provider_data = {**(refund.provider_data or {}), "last_report": report.raw}
    if report.state in ("pending", "unknown"):
        if refund.state != "abnormal":
            refund.state = report.state
        if report.state == "unknown":
            refund.attempts = (refund.attempts or 0) + 1
            refund.last_error = str((report.raw or {}).get("error") or "outcome unknown")[:2000]
        _audit_if_stuck(session, refund, order)
        return refund.state
    if report.state == "abnormal":
        if refund.state != "abnormal":
            refund.state = "abnormal"
            audit.record(session, actor=actor, front="job", action="refund_abnormal", account_id=order.account_id,
                         order_no=order.order_no, refund_no=refund.refund_no, amount=format_fen(refund.amount_fen))
        return refund.state
    order = lock_order(session, order.order_no)
    if report.state == "succeeded":
        if report.amount_fen is not None and report.amount_fen != refund.amount_fen:
            flag(session, order, f"refund {refund.refund_no} reported {format_fen(report.amount_fen)}, "
                                 f"asked {format_fen(refund.amount_fen)}", actor=actor)
        _finish_refund(session, refund, order, "succeeded", actor=actor, front="job")
    elif report.state == "failed":
        _finish_refund(session, refund, order, "failed", actor=actor, front="job",
                       memo=f"refund {refund.refund_no} failed at {report.channel}")
    else:
        raise ValueError(f"unknown refund report state {report.state!r}")
    return refund.state


def _audit_if_stuck(session: Session, refund: PaymentRefund, order: PaymentOrder) -> None:
    """Once per refund: still open after METERPAY_REFUND_STUCK_HOURS -> an audit record for a manager."""
    if (refund.provider_data or {}).get("stuck_reported") or utcnow() - refund.created_at < stuck_after():
        return
    refund.provider_data = {**(refund.provider_data or {}), "stuck_reported": utcnow().isoformat()}
    audit.record(session, actor="system", front="job", action="refund_stuck", account_id=order.account_id,
                 order_no=order.order_no, refund_no=refund.refund_no, state=refund.state,
                 attempts=refund.attempts, last_error=refund.last_error)


def _finish_refund(session: Session, refund: PaymentRefund, order: PaymentOrder, state: str, *, actor: str,
                   front: str, memo: str = "", **detail) -> None:
    """succeeded or failed, for good; failed reverses the wallet debit. ``order`` is locked by the caller."""
    refund.state = state
    if state == "failed":
        if refund.entry_id:
            cashdesk.reverse_entry(session, refund.entry_id, actor=actor, front=front, memo=memo)
        order.refunded_fen -= refund.amount_fen
    refund.finished_at = utcnow()
    if order.state != "flagged":
        still_open = session.scalar(select(PaymentRefund.id).where(
            PaymentRefund.order_id == order.id, PaymentRefund.state.in_(OPEN_REFUND_STATES),
            PaymentRefund.id != refund.id).limit(1))
        if still_open:
            order.state = "refunding"
        else:
            order.state = "refunded" if order.refunded_fen >= order.amount_fen else "paid"
    audit.record(session, actor=actor, front=front, action=f"refund_{refund.state}",
                 account_id=order.account_id, order_no=order.order_no, refund_no=refund.refund_no,
                 amount=format_fen(refund.amount_fen), **detail)


RESOLUTIONS = ("refunded-elsewhere", "recredit")


def resolve_abnormal_refund(session: Session, refund_no: str, outcome: str, *, actor: str, front: str = "cli",
                            note: str = "") -> PaymentRefund:
    """A manager settles an ABNORMAL refund (the money could not reach the payer's card) after deciding in
    the merchant platform. Call inside one transaction.

    - "refunded-elsewhere": the payer got the money another way (the platform's retry to their balance, a
      transfer, cash): the refund counts as succeeded; the debit stands.
    - "recredit": the money stays with us: the refund fails and the wallet debit is reversed, once.
    Raises Conflict unless the refund is ``abnormal`` (so a second call changes nothing), ValidationError
    for another outcome. Audited as ``refund_abnormal_resolved``.
    """
    if outcome not in RESOLUTIONS:
        raise ValidationError(f"outcome: must be one of {', '.join(RESOLUTIONS)}", field="outcome")
    refund = lock_refund(session, refund_no)
    if refund.state != "abnormal":
        raise Conflict(f"refund {refund_no} is {refund.state}; only an abnormal refund is resolved by hand")
    order = lock_order(session, get_existing(session, PaymentOrder, refund.order_id).order_no)
    audit.record(session, actor=actor, front=front, action="refund_abnormal_resolved", account_id=order.account_id,
                 order_no=order.order_no, refund_no=refund.refund_no, outcome=outcome, note=(note or "")[:500],
                 amount=format_fen(refund.amount_fen))
    refund.provider_data = {**(refund.provider_data or {}),
                            "resolved": {"outcome": outcome, "by": actor, "note": (note or "")[:500]}}
    if outcome == "recredit":
        _finish_refund(session, refund, order, "failed", actor=actor, front=front,
                       memo=f"refund {refund.refund_no} abnormal, re-credited by {actor}")
    else:
        _finish_refund(session, refund, order, "succeeded", actor=actor, front=front)
    session.flush()
    return refund


# --- reconciliation ---------------------------------------------------------------------

def day_bounds(day: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(get_settings().timezone)
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, start + timedelta(days=1)


def reconcile(session: Session, channel: str, day: date, lines: list[StatementLine]) -> PaymentReconciliation:
    """Compare a provider's statement of ``day`` with the ledger; store and return the mismatches.

    The ledger's side of the day is chosen by the provider's paid time (``PaymentOrder.paid_at``, from the
    notification or query), not by when we credited it: a payment at 23:59 credited after midnight belongs
    to the day it was paid, as in the provider's statement.
    """
    start, end = day_bounds(day)
    prefix = f"pay:{channel}:"
    ledger_rows = session.execute(
        select(PaymentOrder.provider_txn_id, PaymentOrder.order_no)
        .join(JournalEntry, JournalEntry.idempotency_key == literal(prefix) + PaymentOrder.provider_txn_id)
        .where(PaymentOrder.channel == channel, PaymentOrder.provider_txn_id.is_not(None),
               PaymentOrder.paid_at >= start, PaymentOrder.paid_at < end)).all()
    ledger_day = {txn_id: {"order_no": order_no} for txn_id, order_no in ledger_rows}
    mismatches: list[dict] = []
    seen: set[str] = set()
    for line in lines:
        if line.kind == "payment":
            seen.add(line.txn_id)
            order = session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == line.order_no))
            entry = session.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == prefix + line.txn_id))
            if entry is None:
                mismatches.append({"kind": "missing_in_ledger", "txn_id": line.txn_id, "order_no": line.order_no,
                                   "amount": format_fen(line.amount_fen),
                                   "order_state": order.state if order else None})
            elif order is None or order.amount_fen != line.amount_fen:
                mismatches.append({"kind": "amount_differs", "txn_id": line.txn_id, "order_no": line.order_no,
                                   "statement_amount": format_fen(line.amount_fen),
                                   "ledger_amount": format_fen(order.amount_fen) if order else None})
        else:
            refund = session.scalar(select(PaymentRefund).where(PaymentRefund.provider_refund_id == line.txn_id))
            if refund is None or refund.state == "failed":  # failed: reversed in the ledger, yet paid out
                mismatches.append({"kind": "refund_missing_in_ledger", "txn_id": line.txn_id,
                                   "order_no": line.order_no, "amount": format_fen(line.amount_fen)})
            elif refund.amount_fen != line.amount_fen:
                mismatches.append({"kind": "amount_differs", "txn_id": line.txn_id, "order_no": line.order_no,
                                   "statement_amount": format_fen(line.amount_fen),
                                   "ledger_amount": format_fen(refund.amount_fen)})
    for txn_id, meta in sorted(ledger_day.items()):
        if txn_id not in seen:
            mismatches.append({"kind": "missing_in_statement", "txn_id": txn_id,
                               "order_no": (meta or {}).get("order_no")})
    row = session.scalar(select(PaymentReconciliation).where(PaymentReconciliation.channel == channel,
                                                             PaymentReconciliation.day == day))
    if row is None:
        row = PaymentReconciliation(channel=channel, day=day)
        session.add(row)
    row.statement_count = len(lines)
    row.ledger_count = len(ledger_day)
    row.mismatches = mismatches
    row.created_at = utcnow()
    if mismatches:
        audit.record(session, actor="reconciliation", front="job", action="reconciliation_mismatch",
                     channel=channel, day=day.isoformat(), count=len(mismatches))
    session.flush()
    return row

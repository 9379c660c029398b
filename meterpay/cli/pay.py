"""``meterpay pay ...``: a manager's refund through the provider, open refunds and resolving an abnormal one,
the pending-order query, reconciliation."""
from __future__ import annotations

import click

from meterpay.cli.base import cli, friendly_errors, print_json


@cli.group()
def pay() -> None:
    """WeChat Pay / Alipay orders: refunds, pending queries, daily reconciliation."""


@pay.command("refund")
@click.argument("order_no")
@click.argument("amount")
@click.option("--reason", default="", help="shown to the payer by the provider")
@click.option("--actor", default="cli", show_default=True, help="who asks (kept in the audit log)")
@friendly_errors
def refund(order_no: str, amount: str, reason: str, actor: str) -> None:
    """Refund AMOUNT yuan of a paid ORDER_NO to the payer (debits the wallet now). Prints the refund's state:
    succeeded, pending, unknown (the query job asks again), abnormal (see `pay refunds`) or failed (re-credited)."""
    from core.db import session_scope
    from core.ledger.money import format_fen, parse_yuan
    from core.payments import orders as payments
    from core.signals import load_listeners
    load_listeners()
    import re

    from core.errors import ValidationError
    if not re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", amount):
        raise ValidationError(f"amount: {amount!r} is not an amount in yuan, e.g. 20.00")
    amount_fen = parse_yuan(amount)
    with session_scope() as session:
        r = payments.start_refund(session, order_no, amount_fen, actor=actor, front="cli", reason=reason)
        refund_no = r.refund_no
    from core.jobs import wait_idle
    wait_idle(60)
    from sqlalchemy import select

    from core.db import new_session
    from core.models import PaymentRefund
    with new_session() as session:
        r = session.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == refund_no))
        print_json({"refund_no": r.refund_no, "order_no": order_no, "amount": format_fen(r.amount_fen),
                    "state": r.state})


@pay.command("query-pending")
@click.option("--older-than", type=int, default=None, help="seconds (default METERPAY_PAY_PENDING_AFTER)")
@friendly_errors
def query_pending(older_than: int | None) -> None:
    """Ask the providers about orders still pending; settle what they report."""
    from core.signals import load_listeners
    from miniapp_api.jobs import query_pending as run
    load_listeners()
    print_json(run(older_than_seconds=older_than))


@pay.command("reconcile")
@click.option("--day", default=None, help="YYYY-MM-DD (default: yesterday, Asia/Shanghai)")
@click.option("--channel", type=click.Choice(["wechat", "alipay"]), default=None)
@friendly_errors
def reconcile(day: str | None, channel: str | None) -> None:
    """Compare the providers' statements of a day with the ledger; prints the mismatches."""
    from miniapp_api.jobs import reconcile as run
    for report in run(day, channel):
        print_json(report)


@pay.command("orders")
@click.option("--state", type=click.Choice(["created", "pending", "paid", "closed", "failed", "flagged",
                                            "refunding", "refunded"]), default="flagged", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@friendly_errors
def orders(state: str, limit: int) -> None:
    """List orders in a state, newest first (flagged ones wait for a manager), one JSON line each."""
    from sqlalchemy import select

    from core.db import new_session
    from core.ledger.money import format_fen
    from core.models import PaymentOrder
    with new_session() as session:
        for o in session.scalars(select(PaymentOrder).where(PaymentOrder.state == state)
                                 .order_by(PaymentOrder.id.desc()).limit(limit)):
            print_json({"order_no": o.order_no, "account_id": o.account_id, "channel": o.channel,
                        "amount": format_fen(o.amount_fen), "state": o.state, "flag_reason": o.flag_reason,
                        "provider_txn_id": o.provider_txn_id, "created_at": o.created_at.isoformat()})


@pay.command("refunds")
@click.option("--state", type=click.Choice(["requested", "pending", "unknown", "abnormal", "succeeded", "failed",
                                            "open"]), default="open", show_default=True,
              help="open: requested, pending, unknown and abnormal (what still waits for an answer or a manager)")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@friendly_errors
def refunds(state: str, limit: int) -> None:
    """List refunds in a state, newest first, one JSON line each (abnormal ones wait for a manager:
    `meterpay pay resolve-refund`)."""
    from sqlalchemy import select

    from core.db import new_session
    from core.ledger.money import format_fen
    from core.models import PaymentOrder, PaymentRefund
    from core.models.payment import OPEN_REFUND_STATES
    states = OPEN_REFUND_STATES if state == "open" else (state,)
    with new_session() as session:
        rows = session.execute(select(PaymentRefund, PaymentOrder.order_no, PaymentOrder.channel)
                               .join(PaymentOrder, PaymentOrder.id == PaymentRefund.order_id)
                               .where(PaymentRefund.state.in_(states))
                               .order_by(PaymentRefund.id.desc()).limit(limit))
        for r, order_no, channel in rows:
            print_json({"refund_no": r.refund_no, "order_no": order_no, "channel": channel,
                        "amount": format_fen(r.amount_fen), "state": r.state, "attempts": r.attempts,
                        "last_error": r.last_error, "requested_by": r.requested_by,
                        "created_at": r.created_at.isoformat(),
                        "finished_at": r.finished_at.isoformat() if r.finished_at else None})


@pay.command("resolve-refund")
@click.argument("refund_no")
@click.option("--outcome", type=click.Choice(["refunded-elsewhere", "recredit"]), required=True,
              help="refunded-elsewhere: the payer got the money (the refund counts as done); "
                   "recredit: the money stays with us and goes back to the wallet")
@click.option("--actor", required=True, help="the manager who decided (kept in the audit log)")
@click.option("--note", default="", help="what was done in the merchant platform")
@friendly_errors
def resolve_refund(refund_no: str, outcome: str, actor: str, note: str) -> None:
    """Settle an ABNORMAL WeChat refund after deciding in the merchant platform (only abnormal ones)."""
    from core.db import session_scope
    from core.ledger.money import format_fen
    from core.payments import orders as payments
    from core.signals import load_listeners
    load_listeners()
    with session_scope() as session:
        r = payments.resolve_abnormal_refund(session, refund_no, outcome, actor=actor, front="cli", note=note)
        print_json({"refund_no": r.refund_no, "amount": format_fen(r.amount_fen), "state": r.state,
                    "outcome": outcome})

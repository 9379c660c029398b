"""``meterpay pay ...``: a manager's refund through the provider, the pending-order query, reconciliation."""
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
    """Refund AMOUNT yuan of a paid ORDER_NO to the payer (debits the wallet now)."""
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

"""Invariants of provider refunds that ``meterpay ledger check`` proves (beside ``core.ledger.check``).

A refund's wallet debit is reversed exactly when the refund failed: never while its outcome is
unknown, pending or abnormal (the money may be on its way to the payer), never after it succeeded,
and always once it failed. (core.ledger may not import payments, so the CLI runs these itself.)
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.ledger.check import Problem
from core.models import JournalEntry, PaymentRefund


def refunds_reversed_while_unknown(session: Session) -> list[Problem]:
    """A refund that is not ``failed`` but whose debit has a reversal, and a ``failed`` one whose debit has none."""
    reversal = aliased(JournalEntry)
    rows = session.execute(
        select(PaymentRefund.refund_no, PaymentRefund.state, PaymentRefund.entry_id, reversal.id)
        .outerjoin(reversal, reversal.reverses_id == PaymentRefund.entry_id)
        .where(PaymentRefund.entry_id.is_not(None))
        .order_by(PaymentRefund.id))
    problems = []
    for refund_no, state, entry_id, reversal_id in rows:
        if reversal_id is not None and state != "failed":
            problems.append(Problem("refund-reversal", f"refund {refund_no}",
                                    f"is {state}, but its debit (entry {entry_id}) was reversed by entry "
                                    f"{reversal_id}: only a failed refund gives the money back"))
        elif reversal_id is None and state == "failed":
            problems.append(Problem("refund-reversal", f"refund {refund_no}",
                                    f"failed, but its debit (entry {entry_id}) was never reversed"))
    return problems


CHECKS = (refunds_reversed_while_unknown,)


def validate(session: Session) -> list[Problem]:
    """Every payments check."""
    return [p for check in CHECKS for p in check(session)]

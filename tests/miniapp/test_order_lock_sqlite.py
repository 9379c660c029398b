"""Two reports of one order at once: the order's lock must hold on SQLite too (no FOR UPDATE there)."""
from __future__ import annotations

import threading

from sqlalchemy import select

from core import ledger
from core.db import session_scope
from core.models import AuditLog
from core.payments import orders
from core.payments.provider import PaymentReport


def test_two_paid_reports_with_different_transactions_at_once_credit_once(session, factory, monkeypatch):
    """Both reports reach the point of crediting only if both read the order before either wrote it.
    The barrier waits there for the other; with the order locked the second is still waiting for the
    lock, the barrier times out, the first credits and commits, and the second then sees a paid order."""
    acct = factory.account()
    order = orders.create_order(session, acct.id, 3000, "wechat")
    session.commit()
    order_no = order.order_no
    both_read = threading.Barrier(2, timeout=2)
    real_mismatch = orders._mismatch

    def mismatch_after_both_read(*args, **kwargs):
        try:
            both_read.wait()
        except threading.BrokenBarrierError:
            pass
        return real_mismatch(*args, **kwargs)

    monkeypatch.setattr(orders, "_mismatch", mismatch_after_both_read)
    outcomes, errors = [], []

    def report(txn: str) -> None:
        try:
            with session_scope() as s:
                outcomes.append(orders.settle(s, PaymentReport(channel="wechat", order_no=order_no, state="paid",
                                                               txn_id=txn, amount_fen=3000)).outcome)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(f"TXN-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(outcomes) == ["credited", "duplicate"]
    session.expire_all()
    assert ledger.account_balance(session, acct.id) == 3000
    second = session.scalars(select(AuditLog).where(AuditLog.action == "payment_second_txn")).all()
    assert len(second) == 1

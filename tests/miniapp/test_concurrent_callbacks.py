"""100 copies of one callback arriving at once, against PostgreSQL: the wallet is credited once."""
from __future__ import annotations

import threading

import requests
from sqlalchemy import select

from miniapp_api import sandbox_sign as sign
from tests.miniapp.conftest import balance_of, order_row
from tests.miniapp.test_callbacks import wx_resource


def test_100_concurrent_duplicates_of_one_callback_credit_once(pg_only, bound_tenant, pay_env):
    from core.db import new_session
    from core.models import JournalEntry
    tenant, account = bound_tenant()
    order = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "88.88", "channel": "wechat"}).json()
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"], total=8888))
    url = f"{pay_env['app']}/pay/wechat/notify"
    start = threading.Barrier(100)
    statuses: list[int] = []
    lock = threading.Lock()

    def deliver():
        start.wait()
        status = requests.post(url, data=body.encode(), headers=headers, timeout=60).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=deliver) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [204] * 100
    assert balance_of(account.id) == 1000 + 8888
    with new_session() as s:
        keys = s.scalars(select(JournalEntry.idempotency_key).where(JournalEntry.kind == "recharge",
                                                                    JournalEntry.account_id == account.id)).all()
        assert [k for k in keys if k.startswith("pay:")] == [f"pay:wechat:{wx_resource(order['order_no'])['transaction_id']}"]
    assert order_row(order["order_no"]).state == "paid"

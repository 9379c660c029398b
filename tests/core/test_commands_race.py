"""Two transactions asking for one command key at once make one command (PostgreSQL, real threads).

The second one passes the key check (the first has not committed), then blocks on the unique
index; when the first commits it must get the first one's command back, as ``ledger.post`` does
for a duplicate entry, and not an IntegrityError.
"""
from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from core.db import new_session, session_scope
from core.models import AuditLog, Meter, MeterCommand, MeterCommandEvent
from core.supply import commands


def test_two_requests_with_one_key_at_once_make_one_command(pg_only, session, factory):
    acct = factory.account(billing_mode="prepaid-meter")
    meter_id = session.scalars(select(Meter.id).where(Meter.account_id == acct.id)).one()
    session.commit()

    first = new_session()
    cmd = commands.request(first, meter_id, "recharge", {"amount_fen": 5000}, key="race:k", enqueue=False)
    first.flush()  # inserted, not committed: the key check of another transaction does not see it

    results: list[int] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with session_scope() as s:
                results.append(commands.request(s, meter_id, "recharge", {"amount_fen": 5000}, key="race:k",
                                                enqueue=False).id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "the second request should wait on the unique index"
    first.commit()
    first_id = cmd.id
    first.close()
    t.join(10)
    assert errors == []
    assert results == [first_id]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(MeterCommand)
                          .where(MeterCommand.idempotency_key == "race:k")) == 1
    assert session.scalar(select(func.count()).select_from(MeterCommandEvent)
                          .where(MeterCommandEvent.command_id == first_id)) == 1
    assert session.scalar(select(func.count()).select_from(AuditLog)
                          .where(AuditLog.action == "command:recharge")) == 1

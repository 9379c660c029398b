"""Rollups under real concurrency on PostgreSQL: threads recharging, refunding and billing the same
accounts on the same day (one rollup row each) and billing batches of many meters, all at once.
Every rollup row is written under a lock its writer already holds (the wallet, the meter's billing
state), so nothing deadlocks and nothing is lost: the sums equal the ledger and the readings."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from core.billing import RawReading, ingest_batch
from core.db import session_scope
from core.ledger import cashdesk
from core.ledger.check import validate as validate_ledger
from core.models.report import LedgerDay, ReadingDay
from core.reports.check import validate as validate_rollups
from core.sites.accounts import MeterSpec
from core.tariffs.store import add_plan

SH = ZoneInfo("Asia/Shanghai")


def test_threads_posting_and_billing_the_same_accounts_keep_the_rollups_exact(pg_only, session, factory):
    add_plan(session, "conc-flat", {"kind": "flat", "unit": "kWh", "price": "0.6"})
    site = factory.site("Concurrent")
    accounts = [factory.account(room=factory.room(site, f"C{i}"), tariff="conc-flat", balance_fen=1_000_000,
                                meters=(MeterSpec(serial=f"CONC{i}"),)) for i in range(6)]
    meters = [a.meters[0].id for a in accounts]
    start = datetime(2026, 3, 1, 0, 0, tzinfo=SH)
    errors: list[BaseException] = []
    go = threading.Barrier(8)

    def cashier(n: int) -> None:
        try:
            go.wait()
            for i in range(40):
                with session_scope() as s:
                    acct = accounts[(n + i) % len(accounts)].id
                    if i % 5 == 4:
                        cashdesk.refund(s, acct, 10, key=f"conc-ref-{n}-{i}")
                    else:
                        cashdesk.desk_recharge(s, acct, 100 + n, key=f"conc-rc-{n}-{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def biller(n: int) -> None:
        try:
            go.wait()
            for k in range(15):
                at = start + timedelta(hours=n * 100 + k)
                with session_scope() as s:
                    ingest_batch(s, [RawReading(m, at, Decimal(n * 1000 + k)) for m in meters])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=cashier, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=biller, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    session.expire_all()
    assert validate_ledger(session) == [] and validate_rollups(session) == []
    assert session.scalar(select(func.sum(ReadingDay.readings))) == 2 * 15 * len(meters)
    desk = session.scalar(select(func.sum(LedgerDay.postings)).where(LedgerDay.kind.in_(("recharge", "refund"))))
    assert desk == 6 * 40

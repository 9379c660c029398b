"""16 threads each posting 200 operations to one wallet, against PostgreSQL."""
import threading

from core import ledger
from core.db import session_scope
from core.ledger import cashdesk
from core.ledger import check as ledger_check


def test_sixteen_threads_posting_to_one_wallet_end_exact(pg_only, session, factory):
    acct = factory.account(balance_fen=1_000_000)
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(200):
                with session_scope() as s:
                    if i % 4 == 3:
                        cashdesk.consume(s, acct.id, 7, key=f"t{n}-c{i}")
                    else:
                        cashdesk.desk_recharge(s, acct.id, 100 + n, key=f"t{n}-r{i}")
                if i % 50 == 0:
                    # A duplicate delivery of an earlier cause: must be a no-op, not an error.
                    with session_scope() as s:
                        cashdesk.desk_recharge(s, acct.id, 100 + n, key=f"t{n}-r0")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = 1_000_000 + sum(150 * (100 + n) - 50 * 7 for n in range(16))
    session.expire_all()
    assert ledger.account_balance(session, acct.id) == expected
    assert ledger.balance_from_postings(session, ledger.wallet_of(session, acct.id).id) == expected
    assert ledger_check.validate(session) == []


def test_concurrent_duplicates_of_one_cause_post_once(pg_only, session, factory):
    acct = factory.account()
    start = threading.Barrier(12)
    results, errors = [], []

    def worker() -> None:
        try:
            start.wait()
            with session_scope() as s:
                results.append(cashdesk.desk_recharge(s, acct.id, 5000, key="same-cause").created)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results.count(True) == 1
    session.expire_all()
    assert ledger.account_balance(session, acct.id) == 5000

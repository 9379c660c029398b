"""Jobs run once, after commit; periodic slots run once across schedulers; signals fire after commit only."""
import pytest

from core import jobs, ledger, signals
from core.db import new_session, session_scope
from tests.core import jobs_target


@pytest.fixture(autouse=True)
def _reset_calls():
    jobs_target.CALLS.clear()


def test_eager_jobs_run_at_enqueue():
    jobs.enqueue("tests.core.jobs_target.record", 1)
    assert jobs_target.CALLS == [1]


def test_in_process_runner_runs_jobs_in_the_background():
    jobs.set_eager(False)
    for i in range(5):
        jobs.enqueue(jobs_target.record, i)
    assert jobs.wait_idle(10)
    assert sorted(jobs_target.CALLS) == [0, 1, 2, 3, 4]


def test_after_commit_jobs_never_run_for_a_rolled_back_transaction():
    with pytest.raises(RuntimeError):
        with session_scope() as s:
            jobs.enqueue_after_commit(s, "tests.core.jobs_target.record", "rolled back")
            raise RuntimeError("boom")
    with session_scope() as s:
        jobs.enqueue_after_commit(s, "tests.core.jobs_target.record", "committed")
    assert jobs_target.CALLS == ["committed"]


def test_rq_queue_and_worker_run_a_job(redis_url):
    from redis import Redis
    from rq import Queue, SimpleWorker
    jobs.set_eager(False)
    jobs.enqueue("tests.core.jobs_target.record", "via rq", queue="meters")
    conn = Redis.from_url(redis_url)
    SimpleWorker([Queue("meters", connection=conn)], connection=conn).work(burst=True)
    assert conn.lrange("meterpay:test:calls", 0, -1) == [b"via rq"]


def test_a_periodic_slot_runs_once_even_with_two_schedulers(redis_url):
    from redis import Redis
    jobs.run_periodic("probe", "tests.core.jobs_target.record_tick", 3600)
    jobs.run_periodic("probe", "tests.core.jobs_target.record_tick", 3600)
    assert Redis.from_url(redis_url).llen("meterpay:test:calls") == 1


def test_unknown_queue_is_refused():
    with pytest.raises(ValueError):
        jobs.enqueue(jobs_target.record, 1, queue="nope")


def test_signal_listeners_hear_only_committed_changes(session, factory):
    heard = []

    def listener(**payload):
        heard.append(payload)
    signals.on("balance_changed")(listener)
    try:
        acct = factory.account()
        from core.ledger import cashdesk
        cashdesk.desk_recharge(session, acct.id, 100)
        session.rollback()
        assert heard == []
        cashdesk.desk_recharge(session, acct.id, 200)
        session.commit()
        assert [h["delta_fen"] for h in heard] == [200] and heard[0]["account_id"] == acct.id
    finally:
        signals.disconnect("balance_changed", listener)


def test_a_failing_listener_does_not_fail_the_caller(session, factory, caplog):
    heard = []

    def broken(**_):
        raise RuntimeError("listener bug")

    def good(**payload):
        heard.append(payload)
    signals.on("balance_changed")(broken)
    signals.on("balance_changed")(good)  # after the broken one: it still hears the change
    try:
        acct = factory.account()
        before = ledger.account_balance(session, acct.id)
        from core.ledger import cashdesk
        with caplog.at_level("ERROR", logger="core.signals"):
            cashdesk.desk_recharge(session, acct.id, 100)
            session.commit()
    finally:
        signals.disconnect("balance_changed", broken)
        signals.disconnect("balance_changed", good)
    assert [(h["account_id"], h["delta_fen"]) for h in heard] == [(acct.id, 100)]
    with new_session() as fresh:
        assert ledger.account_balance(fresh, acct.id) == before + 100
    assert any("listener broken for balance_changed failed" in r.getMessage() and r.exc_info
               for r in caplog.records)


def test_work_registered_inside_a_rolled_back_savepoint_is_dropped(session):
    from sqlalchemy.exc import IntegrityError

    from core.db import after_commit
    calls = []
    try:
        with session.begin_nested():
            after_commit(session, lambda: calls.append("inner"))
            raise IntegrityError("x", {}, Exception("simulated"))
    except IntegrityError:
        pass
    after_commit(session, lambda: calls.append("outer"))
    session.commit()
    assert calls == ["outer"]


def test_releasing_a_savepoint_does_not_run_after_commit_work_early(session):
    from sqlalchemy import text

    from core.db import after_commit
    calls = []
    session.execute(text("SELECT 1"))
    after_commit(session, lambda: calls.append("outer"))
    with session.begin_nested():
        after_commit(session, lambda: calls.append("inner"))
    assert calls == []
    session.commit()
    assert calls == ["outer", "inner"]

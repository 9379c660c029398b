"""Re-running, retrying, stopping, cancelling, a killed worker and two workers: never twice."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.batch import runner, tasks
from core.db import session_scope
from core.errors import Conflict
from core.ledger import account_balance
from core.models import BatchItem, BatchTask, JournalEntry, MeterCommand
from core.utils import utcnow
from tests.batch.helpers import batch_commands, batch_entries, count_keys, drive, make_task, states

ROOT = Path(__file__).resolve().parents[2]


def controls(sim) -> list[str]:
    return [a for a in sim.applied if a.startswith("control") or a.startswith("recharge")]


def test_retry_failed_sends_only_the_failed_item_again(wired_site, session):
    site, rooms, _ = wired_site(3)
    sims = [r[3] for r in rooms]
    real = sims[1].control
    sims[1].control = lambda n1: False  # the meter says no
    task = make_task(session, site, "relay_off")
    drive(task)
    got = states(session, task)
    assert [s for s, _r in got] == ["confirmed", "failed", "confirmed"]
    assert got[1][1]
    sims[1].control = real
    assert tasks.retry(session, task, failed_only=True, actor="tester", front="cli") == 1
    session.commit()
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 3
    keys = [c.idempotency_key for c in batch_commands(session, task)]
    assert sorted(keys) == sorted([f"batch:{task}:1", f"batch:{task}:2", f"batch:{task}:3", f"batch:{task}:2:2"])
    assert [len(controls(s)) for s in sims] == [1, 1, 1]
    # a re-run of a finished task does nothing at all
    assert tasks.run_now(session, task, actor="tester", front="cli") is False
    session.commit()
    assert drive(task)["ran"] is False
    assert tasks.retry(session, task, failed_only=True, actor="tester", front="cli") == 0
    session.commit()
    assert len(batch_commands(session, task)) == 4 and [len(controls(s)) for s in sims] == [1, 1, 1]


def test_money_items_are_never_posted_twice(wired_site, session):
    site, rooms, _ = wired_site(3, balance_fen=10000)
    session.execute(update(__import__("core.models", fromlist=["Account"]).Account)
                    .where(__import__("core.models", fromlist=["Account"]).Account.id == rooms[2][1].id)
                    .values(status="closed"))
    session.commit()
    task = make_task(session, site, "charge", params={"code": "svc", "name": "服务费", "amount": "10.00"})
    drive(task)
    drive(task)
    assert [s for s, _r in states(session, task)] == ["confirmed", "confirmed", "skipped"]
    assert tasks.retry(session, task, failed_only=False, actor="tester", front="cli") == 1
    session.commit()
    drive(task)
    assert len(batch_entries(session, task)) == 2
    assert [account_balance(session, r[1].id) for r in rooms[:2]] == [9000, 9000]
    # the runner asked again for an item already posted (a crash between post and commit) adds nothing
    with session_scope() as s:
        s.execute(update(BatchItem).where(BatchItem.task_id == task, BatchItem.seq == 1).values(state="queued"))
        s.execute(update(BatchTask).where(BatchTask.id == task).values(state="running", finished_at=None))
    drive(task)
    assert len(batch_entries(session, task)) == 2 and account_balance(session, rooms[0][1].id) == 9000


def test_stop_mid_run_cancels_what_was_not_sent(wired_site, session, simulator):
    site, rooms, gws = wired_site(12, per_gateway=12)
    gws[0].baud = 2400  # a slow bus: about a second a command (replies still within the test timeout)
    task = make_task(session, site, "relay_off")
    worker = threading.Thread(target=drive, args=(task,))
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope() as s:
            if s.scalar(select(BatchItem.id).where(BatchItem.task_id == task, BatchItem.state == "confirmed")
                        .limit(1)):
                break
        time.sleep(0.1)
    with session_scope() as s:
        assert tasks.stop(s, task, actor="tester", front="cli") == "stopped"
    worker.join(120)
    assert not worker.is_alive()
    got = [s for s, _r in states(session, task)]
    assert set(got) <= {"confirmed", "cancelled"} and got.count("cancelled") >= 6, got
    sent = {c.meter_id for c in batch_commands(session, task) if c.state == "confirmed"}
    assert got.count("confirmed") == len(sent)
    # only the confirmed ones reached their meters
    assert sum(len(controls(r[3])) for r in rooms) == got.count("confirmed")
    assert tasks.show(session, task)["state"] == "stopped"


def test_a_scheduled_task_waits_and_can_be_cancelled_until_it_starts(wired_site, session):
    site, rooms, _ = wired_site(2)
    at = (utcnow() + timedelta(hours=2)).astimezone(tasks.site_zone(site)).strftime("%Y-%m-%d %H:%M")
    task = make_task(session, site, "relay_off", at=at)
    assert tasks.show(session, task)["scheduled_at"] == at
    runner.sweep()
    assert tasks.show(session, task)["state"] == "scheduled" and drive(task)["ran"] is False
    assert tasks.cancel(session, task, actor="tester", front="cli") == "cancelled"
    session.commit()
    assert [s for s, _r in states(session, task)] == ["cancelled", "cancelled"]
    assert tasks.run_now(session, task, actor="tester", front="cli") is False
    session.commit()
    assert batch_commands(session, task) == [] and all(r[3].relay_on for r in rooms)


def test_a_scheduled_task_starts_by_itself_when_due(wired_site, session):
    site, rooms, _ = wired_site(2)
    task = make_task(session, site, "relay_off", at=utcnow() + timedelta(minutes=5))
    runner.sweep()
    assert tasks.show(session, task)["state"] == "scheduled"
    with session_scope() as s:
        s.execute(update(BatchTask).where(BatchTask.id == task).values(scheduled_at=utcnow() - timedelta(seconds=1)))
    runner.sweep()  # starts it (the engine runs at once: jobs are eager in tests)
    assert tasks.show(session, task)["state"] == "finished"
    assert not any(r[3].relay_on for r in rooms)


def test_unconfirmed_supply_tasks_do_not_start(wired_site, session):
    site, _rooms, _ = wired_site(1)
    task = make_task(session, site, "relay_off", confirmed=False)
    runner.sweep()
    assert tasks.show(session, task)["state"] == "unconfirmed"
    with pytest.raises(Conflict):
        tasks.run_now(session, task, actor="x", front="cli")
    session.rollback()


KILLED_WORKER = r"""
import sys
from hardware import batch_engine
batch_engine.drive(int(sys.argv[1]))
"""


def test_a_worker_killed_mid_batch_is_resumed_without_duplicates(wired_site, session, settings_env):
    """Meter-side recharges (exactly-once by the purchase count) through an engine in a child
    process, SIGKILLed half-way; the sweep starts another engine, which finishes the task."""
    site, rooms, gws = wired_site(10, per_gateway=10, billing_mode="prepaid-meter", balance_fen=0)
    gws[0].baud = 2400
    counts0 = [r[3].purchase_count for r in rooms]
    task = make_task(session, site, "recharge", params={"amount": "20.00"})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "METERPAY_COMMAND_LEASE": "2", "METERPAY_BATCH_WINDOW": "2"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(task)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_scope() as s:
                done = s.scalar(select(BatchItem.id).where(BatchItem.task_id == task, BatchItem.state == "confirmed")
                                .offset(2).limit(1))
            if done:
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    partial = [s for s, _r in states(session, task)]
    assert "confirmed" in partial and set(partial) != {"confirmed"}, partial
    # time passes: the dead engine's command leases and its task lease run out
    settings_env(METERPAY_COMMAND_LEASE="2")
    time.sleep(2.5)
    from hardware import executor
    executor.retry_due()
    with session_scope() as s:
        s.execute(update(BatchTask).where(BatchTask.id == task).values(driver_until=utcnow() - timedelta(seconds=1)))
    runner.sweep()  # a new engine (eager here) resumes from the database
    assert states(session, task) == [("confirmed", "")] * 10
    assert [r[3].purchase_count - c for r, c in zip(rooms, counts0, strict=True)] == [1] * 10
    assert len(batch_entries(session, task)) == 10
    assert count_keys(session, MeterCommand, "meter-recharge:%") == 10
    assert count_keys(session, JournalEntry, "meter-credit:%") == 10
    assert [account_balance(session, r[1].id) for r in rooms] == [0] * 10


def test_two_workers_on_the_same_task_do_each_item_once(wired_site, session, pg_only):
    site, rooms, _ = wired_site(16, per_gateway=8)
    relay = make_task(session, site, "relay_off")
    money = make_task(session, site, "recharge", params={"amount": "1.00"})
    from hardware import batch_engine
    for task in (relay, money):
        # drive_tasks: two engines really on one task (drive() leaves a task another live engine drives)
        workers = [threading.Thread(target=batch_engine.drive_tasks, args=([task],)) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
    assert states(session, relay) == [("confirmed", "")] * 16
    assert states(session, money) == [("confirmed", "")] * 16
    assert len(batch_commands(session, relay)) == 16 and len(batch_entries(session, money)) == 16
    assert [len(controls(r[3])) for r in rooms] == [1] * 16
    assert [account_balance(session, r[1].id) for r in rooms] == [10100] * 16


def test_a_retried_prepaid_meter_recharge_pushes_the_same_money_again_and_never_credits_twice(wired_site, session):
    """The wallet is credited once per item (batch:<task>:<item>); a push the meter refused is
    pushed again on retry (meter-recharge:<entry>:2), and the money reaches the meter once."""
    site, rooms, _ = wired_site(2, billing_mode="prepaid-meter", balance_fen=0)
    sims = [r[3] for r in rooms]
    real = sims[1].recharge
    sims[1].recharge = lambda amount_fen, count: False  # the meter refuses the purchase
    task = make_task(session, site, "recharge", params={"amount": "20.00"})
    drive(task)
    assert [s for s, _r in states(session, task)] == ["confirmed", "failed"]
    assert account_balance(session, rooms[1][1].id) == 2000  # credited; the meter has not got it yet
    sims[1].recharge = real
    before = sims[1].purchase_count
    for _ in range(2):  # a retry, and a retry of nothing (the item is confirmed now)
        tasks.retry(session, task, failed_only=True, actor="tester", front="cli")
        session.commit()
        drive(task)
    assert states(session, task) == [("confirmed", "")] * 2
    assert sims[1].purchase_count - before == 1
    assert count_keys(session, JournalEntry, f"batch:{task}:%") == 2  # one credit per item, retried or not
    session.expire_all()
    assert [account_balance(session, r[1].id) for r in rooms] == [0, 0]  # all of it on the meters
    pushes = sorted(c.idempotency_key.rsplit(":", 1)[-1] if c.idempotency_key.count(":") == 2 else "1"
                    for c in session.scalars(select(MeterCommand).where(MeterCommand.meter_id == rooms[1][2].id,
                                                                        MeterCommand.kind == "recharge")))
    assert pushes == ["1", "2"]
    from core.ledger.check import validate
    assert validate(session) == []


def test_a_prepaid_meter_recharge_on_a_meter_that_cannot_take_one_is_skipped_before_money_moves(wired_site,
                                                                                                 session):
    site, rooms, _ = wired_site(1, profile="acrel-ddsy1352", protocol="modbus-rtu", billing_mode="prepaid-meter",
                                balance_fen=0)
    task = make_task(session, site, "recharge", params={"amount": "20.00"})
    drive(task)
    [(state, reason)] = states(session, task)
    assert state == "skipped" and "cannot take a recharge" in reason
    assert account_balance(session, rooms[0][1].id) == 0
    assert count_keys(session, JournalEntry, f"batch:{task}:%") == 0

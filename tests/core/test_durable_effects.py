"""Effects after a commit converge even when the process dies between the commit and the listeners.

A child process moves money and exits (``os._exit``) in the first after-commit hook, before any
``balance_changed`` listener runs: the money is committed, the restore or the meter push is not.
The periodic sweeps find that state and fix it, once.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from core.db import session_scope
from core.ledger import account_balance
from core.models import JournalEntry, MeterCommand, SupplyControl
from core.supply import auto, meter_side
from tests.hardware.conftest import _fast_meters, simulator, wired_meter  # noqa: F401 - fixtures used here

ROOT = Path(__file__).resolve().parents[2]
CRASH_AFTER_COMMIT = r"""
import os, sys
from core.db import after_commit, session_scope
from core.ledger import cashdesk
from core.signals import load_listeners

load_listeners()
account_id, amount, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with session_scope() as s:
    after_commit(s, lambda: os._exit(17))  # runs first: the process dies before any listener
    cashdesk.desk_recharge(s, account_id, amount, key=key, actor="test", front="cli")
"""
NO_FRIENDLY_HOURS = {"nights": "off", "weekends": False, "holidays": False}


def recharge_and_crash(account_id: int, amount_fen: int, key: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", CRASH_AFTER_COMMIT, str(account_id), str(amount_fen), key],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 17, run.stderr


def left_pending(command_id: int) -> None:
    """The executor's stand-in: commands stay pending (this meter is behind no gateway)."""


def commands_of(session, meter_id: int) -> list[MeterCommand]:
    session.expire_all()
    return list(session.scalars(select(MeterCommand).where(MeterCommand.meter_id == meter_id)
                                .order_by(MeterCommand.id)))


def test_a_restore_lost_in_a_crash_after_commit_is_made_by_the_sweep(session, factory, monkeypatch):
    monkeypatch.setattr("core.supply.commands.EXECUTOR", f"{__name__}.left_pending")
    site = factory.site(friendly_hours=NO_FRIENDLY_HOURS)
    acct = factory.account(site=site, balance_fen=0, billing_mode="prepaid-platform")
    meter = acct.meters[0]
    with session_scope() as s:
        auto.evaluate(s, acct.id)
    session.expire_all()
    assert session.scalar(select(SupplyControl.state).where(SupplyControl.account_id == acct.id)) == "cut"
    assert [c.kind for c in commands_of(session, meter.id)] == ["relay_off"]

    recharge_and_crash(acct.id, 5000, "crash:1")

    session.expire_all()
    assert account_balance(session, acct.id) == 5000  # the money is in
    assert session.scalar(select(SupplyControl.state).where(SupplyControl.account_id == acct.id)) == "cut"
    assert [c.kind for c in commands_of(session, meter.id)] == ["relay_off"]  # the restore was lost

    auto.sweep()
    cmds = commands_of(session, meter.id)
    assert [(c.kind, c.idempotency_key) for c in cmds] == [
        ("relay_off", f"auto-cut:{acct.id}:1:{meter.id}"), ("relay_on", f"auto-restore:{acct.id}:1:{meter.id}")]
    assert session.scalar(select(SupplyControl.state).where(SupplyControl.account_id == acct.id)) == "on"
    assert auto.sweep()["evaluated"] == 0
    assert len(commands_of(session, meter.id)) == 2


def test_a_meter_push_lost_in_a_crash_after_commit_is_made_by_the_sweep(session, wired_meter):  # noqa: F811
    meter, sim, gw = wired_meter("dlt645-2007", "000000000071", "dlt645", billing_mode="prepaid-meter",
                                 balance_fen=0)
    count0 = sim.purchase_count

    recharge_and_crash(meter.account_id, 3000, "crash:2")

    assert commands_of(session, meter.id) == []  # the push was lost with the process
    entry_id = session.scalar(select(JournalEntry.id).where(JournalEntry.idempotency_key == "crash:2"))
    assert account_balance(session, meter.account_id) == 3000

    counts = meter_side.sweep()  # eager jobs: the command runs at once
    assert counts["pushed"] == 1
    cmds = commands_of(session, meter.id)
    assert [(c.kind, c.idempotency_key, c.state, c.params) for c in cmds] == [
        ("recharge", f"meter-recharge:{entry_id}", "confirmed", {"amount_fen": 3000})]
    assert [a for a in sim.applied if a.startswith("recharge")] == [f"recharge 3000 #{count0 + 1}"]
    session.expire_all()
    assert account_balance(session, meter.account_id) == 0  # the money is on the meter now

    assert meter_side.sweep() == {"pushed": 0, "no_meter": 0, "credited": 0}
    assert len(commands_of(session, meter.id)) == 1

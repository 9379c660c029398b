"""One engine for several tasks (one lane per bus carries all of them), adoption of tasks no
engine drives, shares of the gateways between engines, and items that follow their commands in
the transaction that ends them."""
from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import select

from core.batch import runner, tasks
from core.models import BatchItem, BatchTask
from tests.batch.helpers import batch_commands, make_task, states

PRICES = {"sharp": "1.2000", "peak": "1.0000", "flat": "0.6000", "valley": "0.3000"}


def controls(sim) -> list[str]:
    return [a for a in sim.applied if a.startswith("control")]


def test_one_engine_drives_two_tasks_over_the_same_meters(wired_site, session):
    from hardware import batch_engine
    site, rooms, _ = wired_site(8, per_gateway=4)
    off = make_task(session, site, "relay_off")
    prices = make_task(session, site, "set_meter_prices", params={"prices": PRICES})
    stats = batch_engine.drive_tasks([off, prices])
    assert stats["ran"] and stats["tasks"] == [off, prices]
    assert stats["confirmed"] == 16 and stats["fed"] == 16
    assert states(session, off) == [("confirmed", "")] * 8
    assert states(session, prices) == [("confirmed", "")] * 8
    assert all(not sim.relay_on for *_x, sim in rooms)
    assert all(sorted(sim.prices.values()) == sorted(Decimal(v) for v in PRICES.values()) for *_x, sim in rooms)
    assert [len(controls(r[3])) for r in rooms] == [1] * 8  # each item sent once
    assert {tasks.show(session, t, with_items=False)["state"] for t in (off, prices)} == {"finished"}
    session.expire_all()
    assert all(t.driver_token is None for t in session.scalars(select(BatchTask)))


def test_an_engine_takes_on_the_runnable_tasks_no_engine_drives(wired_site, session):
    site, rooms, _ = wired_site(4)
    off = make_task(session, site, "relay_off")
    prices = make_task(session, site, "set_meter_prices", params={"prices": PRICES})
    later = make_task(session, site, "relay_on", at="2099-01-01 08:00")  # scheduled: not taken
    unconfirmed = make_task(session, site, "relay_on", confirmed=False)  # waits for its confirmation
    from hardware import batch_engine
    stats = batch_engine.drive(off)
    assert stats["tasks"] == [off, prices]
    assert states(session, prices) == [("confirmed", "")] * 4
    shown = {t: tasks.show(session, t, with_items=False)["state"] for t in (off, prices, later, unconfirmed)}
    assert shown == {off: "finished", prices: "finished", later: "scheduled", unconfirmed: "unconfirmed"}
    assert all(not sim.relay_on for *_x, sim in rooms)
    # without adoption only the task asked for runs
    again = make_task(session, site, "relay_on")
    other = make_task(session, site, "relay_off")
    assert batch_engine.drive(again, adopt=False)["tasks"] == [again]
    assert tasks.show(session, other, with_items=False)["state"] == "pending"


def test_two_engines_each_on_its_share_of_the_gateways_send_each_item_once(wired_site, session, pg_only):
    from hardware import batch_engine
    site, rooms, gws = wired_site(12, per_gateway=3)
    off = make_task(session, site, "relay_off")
    prices = make_task(session, site, "set_meter_prices", params={"prices": PRICES})
    out: list[dict] = []
    workers = [threading.Thread(target=lambda k=k: out.append(batch_engine.drive_tasks([off, prices], shard=(k, 2))))
               for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert sorted(o["fed"] for o in out) == [8, 16] or sum(o["fed"] for o in out) == 24
    assert all(o["fed"] > 0 for o in out)  # 4 gateways: both shares had work
    assert states(session, off) == [("confirmed", "")] * 12
    assert states(session, prices) == [("confirmed", "")] * 12
    assert [len(controls(r[3])) for r in rooms] == [1] * 12
    assert len(batch_commands(session, off)) == 12 and len(batch_commands(session, prices)) == 12


def test_items_follow_their_commands_in_the_finish_transaction(wired_site, session):
    """Confirmed and failed items end with their commands (nothing left ``sent``), the failed one
    with the meter's refusal as its reason, without the sweep."""
    from hardware import batch_engine
    site, rooms, _ = wired_site(5)
    rooms[2][3].control = lambda n1: False  # this meter says no
    off = make_task(session, site, "relay_off")
    batch_engine.drive_tasks([off])
    got = states(session, off)
    assert [s for s, _r in got] == ["confirmed", "confirmed", "failed", "confirmed", "confirmed"]
    cmd = {c.idempotency_key: c for c in batch_commands(session, off)}[f"batch:{off}:3"]
    assert cmd.state == "failed" and got[2][1] == (cmd.last_error or "failed")[:500]
    assert session.scalar(select(BatchItem.id).where(BatchItem.state == "sent")) is None


def test_sync_locked_ends_each_item_as_its_command_ended(wired_site, session):
    from core.db import session_scope
    from core.models import MeterCommand
    from core.supply import commands
    site, rooms, _ = wired_site(3)
    off = make_task(session, site, "relay_off")
    runner.begin(off, "t")
    fed = runner.feed(off, 10)
    assert len(fed.command_ids) == 3
    with session_scope() as s:
        cmds = [s.get(MeterCommand, c) for c in fed.command_ids]
        commands.transition(s, cmds[0], "confirmed", "read back: relay is off")
        commands.transition(s, cmds[1], "failed", "meter refused")
        commands.transition(s, cmds[2], "expired", "not confirmed by the deadline")
        assert runner.sync_locked(s, fed.command_ids) == 3
        assert runner.sync_locked(s, fed.command_ids) == 0  # once
    got = states(session, off)
    assert got[0] == ("confirmed", "") and got[1] == ("failed", "meter refused")
    assert got[2][0] == "skipped" and got[2][1].startswith("meter offline past the deadline")


def test_drive_leaves_a_task_another_live_engine_drives(wired_site, session):
    from datetime import timedelta

    from sqlalchemy import update

    from core.utils import utcnow
    from hardware import batch_engine
    site, rooms, _ = wired_site(2)
    off = make_task(session, site, "relay_off")
    assert runner.begin(off, "other-engine")  # another engine took it on; its lease runs
    assert batch_engine.drive(off)["ran"] is False
    assert states(session, off) == [("queued", "")] * 2
    session.execute(update(BatchTask).where(BatchTask.id == off).values(driver_until=utcnow() - timedelta(seconds=1)))
    session.commit()  # that engine died: its lease ran out
    assert batch_engine.drive(off)["ran"] is True
    assert states(session, off) == [("confirmed", "")] * 2

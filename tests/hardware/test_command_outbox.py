"""Commands through the outbox end honestly: confirmed by a read-back, failed, or expired."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from core.models import Meter, MeterCommand, MeterCommandEvent, MeterEvent
from core.supply import commands
from core.utils import utcnow
from hardware import executor, poller


def states(session, cmd_id):
    session.expire_all()
    return [e.state for e in session.scalars(select(MeterCommandEvent).where(
        MeterCommandEvent.command_id == cmd_id).order_by(MeterCommandEvent.id))]


def command(session, cmd_id) -> MeterCommand:
    session.expire_all()
    return session.get(MeterCommand, cmd_id)


def make_due(session, cmd_id):
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd_id).values(next_attempt_at=utcnow()))
    session.commit()


def test_a_relay_off_is_sent_confirmed_by_reading_back_and_mirrored(session, wired_meter):
    meter, sim, gw = wired_meter()
    cmd = commands.request(session, meter.id, "relay_off", {"reason": "test"})
    session.commit()  # eager jobs: the executor runs now
    assert command(session, cmd.id).state == "confirmed"
    assert states(session, cmd.id) == ["pending", "running", "confirmed"]
    assert not sim.relay_on
    session.refresh(meter)
    assert meter.relay_state == "off" and meter.online and meter.live["relay"] == "off"


def test_a_valve_close_on_a_cjt188_water_meter(session, wired_meter):
    meter, sim, gw = wired_meter("cjt188-water", "00000000000077", "cjt188", kind="water")
    cmd = commands.request(session, meter.id, "valve_close")
    session.commit()
    assert command(session, cmd.id).state == "confirmed"
    session.refresh(meter)
    assert meter.valve_state == "closed" and not sim.valve_open


def test_a_recharge_whose_reply_is_lost_is_applied_exactly_once(session, wired_meter):
    meter, sim, gw = wired_meter("dlt645-2007", "000000000042", "dlt645", billing_mode="prepaid-meter")
    count0, balance0 = sim.purchase_count, sim.balance_fen
    # attempt 1: read count, read balance, send (applied, reply lost), read-back lost too
    sim.script.extend(["ok", "ok", "lost_reply", "no_reply"])
    cmd = commands.request(session, meter.id, "recharge", {"amount_fen": 5000}, key="pay:test:1")
    session.commit()
    c = command(session, cmd.id)
    assert c.state == "pending" and c.result["base_count"] == count0
    assert [a for a in sim.applied if a.startswith("recharge")] == [f"recharge 5000 #{count0 + 1}"]
    make_due(session, cmd.id)
    assert executor.run_pending() == ["confirmed"]
    c = command(session, cmd.id)
    assert c.state == "confirmed" and "found applied on a retry" in states_detail(session, cmd.id)
    # the meter took the money once, and nothing was sent a second time
    assert [a for a in sim.applied if a.startswith("recharge")] == [f"recharge 5000 #{count0 + 1}"]
    assert sim.purchase_count == count0 + 1
    assert balance0 + 5000 - sim.balance_fen < 200  # only consumption since, never a second 50 yuan
    session.refresh(meter)
    assert meter.purchase_count == count0 + 1 and meter.remaining_fen == c.result["remaining_fen"]


def states_detail(session, cmd_id) -> str:
    return " | ".join(e.detail for e in session.scalars(select(MeterCommandEvent).where(
        MeterCommandEvent.command_id == cmd_id)))


def test_the_same_recharge_key_twice_is_one_command(session, wired_meter):
    meter, sim, gw = wired_meter("dlt645-2007", "000000000043", "dlt645", billing_mode="prepaid-meter")
    a = commands.request(session, meter.id, "recharge", {"amount_fen": 1000}, key="pay:test:2")
    session.commit()
    b = commands.request(session, meter.id, "recharge", {"amount_fen": 1000}, key="pay:test:2")
    session.commit()
    assert a.id == b.id
    assert len([x for x in sim.applied if x.startswith("recharge")]) == 1


def test_a_command_to_an_offline_meter_expires_honestly_and_the_meter_shows_offline(session, wired_meter):
    meter, sim, gw = wired_meter()
    poller.poll(meter_ids=[meter.id])  # it was online
    session.refresh(meter)
    assert meter.online
    sim.offline = True
    cmd = commands.request(session, meter.id, "relay_off", ttl=timedelta(minutes=5))
    session.commit()
    for _ in range(2):
        make_due(session, cmd.id)
        executor.run_pending()
    c = command(session, cmd.id)
    assert c.state == "pending" and c.attempts == 3 and "did not answer" in c.last_error
    session.refresh(meter)
    assert not meter.online and meter.relay_state == "on"
    offline = session.scalars(select(MeterEvent).where(MeterEvent.meter_id == meter.id,
                                                       MeterEvent.kind == "offline")).all()
    assert len(offline) == 1 and offline[0].at is not None
    # the deadline passes: the retry job ends it expired, never confirmed or "delivered"
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd.id).values(deadline=utcnow()))
    session.commit()
    assert executor.retry_due()["expired"] == 1
    assert states(session, cmd.id)[-1] == "expired"
    assert set(states(session, cmd.id)) == {"pending", "running", "expired"}
    assert sim.relay_on


def test_a_meter_refusal_fails_the_command_at_once(session, wired_meter):
    meter, sim, gw = wired_meter()
    cmd = commands.request(session, meter.id, "set_prices", {"prices": {"peak": "1.0"}})
    session.commit()
    c = command(session, cmd.id)
    assert c.state == "failed" and "cannot set prices" in c.last_error


def test_a_newer_relay_command_supersedes_an_older_pending_one(session, wired_meter):
    meter, sim, gw = wired_meter()
    from core.jobs import set_eager
    set_eager(False)
    try:
        old = commands.request(session, meter.id, "relay_off", enqueue=False)
        new = commands.request(session, meter.id, "relay_on", enqueue=False)
        session.commit()
    finally:
        set_eager(True)
    assert executor.execute_command(new.id) == "confirmed"
    assert command(session, old.id).state == "failed"
    assert "superseded" in states_detail(session, old.id)
    assert executor.execute_command(old.id) == "failed"
    assert sim.applied == ["relay on"]


def test_two_workers_never_run_the_same_command(session, wired_meter):
    meter, sim, gw = wired_meter()
    cmd = commands.request(session, meter.id, "relay_off", enqueue=False)
    session.commit()
    import threading
    results = []
    threads = [threading.Thread(target=lambda: results.append(executor.execute_command(cmd.id))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("confirmed") == 1
    assert states(session, cmd.id) == ["pending", "running", "confirmed"]
    assert sim.applied == ["relay off"]


def test_the_retry_job_re_enqueues_due_commands_and_frees_ones_a_dead_worker_left(session, wired_meter):
    meter, sim, gw = wired_meter()
    cmd = commands.request(session, meter.id, "relay_off", enqueue=False)
    session.commit()
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd.id).values(
        state="running", last_attempt_at=utcnow() - timedelta(hours=1)))
    session.commit()
    counts = executor.retry_due()  # eager: the re-enqueued command runs at once
    assert counts["released"] == 1 and counts["enqueued"] == 1
    assert command(session, cmd.id).state == "confirmed"


def test_a_meter_without_a_gateway_fails_with_a_reason(session, factory):
    acct = factory.account()
    meter = session.scalars(select(Meter).where(Meter.account_id == acct.id)).one()
    cmd = commands.request(session, meter.id, "relay_off")
    session.commit()
    assert command(session, cmd.id).state == "failed"
    assert "not behind a gateway" in command(session, cmd.id).last_error


def test_a_batch_runs_gateways_in_parallel_and_each_command_ends_once(session, wired_meter, redis_url):
    meters = [wired_meter(address=str(i + 1))[0:2] for i in range(3)]
    ids = [commands.request(session, m.id, "relay_off", enqueue=False).id for m, _ in meters]
    session.commit()
    assert executor.execute_many(ids + ids[:1]) == ["confirmed", "confirmed", "confirmed", "confirmed"]
    assert [sim.applied for _, sim in meters] == [["relay off"]] * 3
    assert executor.execute_many(ids) == ["confirmed"] * 3  # already ended: nothing is sent again
    assert [sim.applied for _, sim in meters] == [["relay off"]] * 3


def test_two_recharges_of_one_meter_apply_in_order_each_once(session, wired_meter):
    meter, sim, gw = wired_meter("dlt645-2007", "000000000044", "dlt645", billing_mode="prepaid-meter")
    count0 = sim.purchase_count
    a = commands.request(session, meter.id, "recharge", {"amount_fen": 1000}, enqueue=False)
    b = commands.request(session, meter.id, "recharge", {"amount_fen": 2000}, enqueue=False)
    session.commit()
    assert executor.execute_many([b.id, a.id]) == ["waiting", "confirmed"]
    make_due(session, b.id)
    assert executor.run_pending() == ["confirmed"]
    assert [x for x in sim.applied if x.startswith("recharge")] == [
        f"recharge 1000 #{count0 + 1}", f"recharge 2000 #{count0 + 2}"]
    assert command(session, b.id).result["base_count"] == count0 + 1


def test_a_desk_recharge_of_a_meter_side_account_reaches_the_meter_once(session, wired_meter):
    from core.ledger import cashdesk
    from core.signals import load_listeners
    load_listeners()
    meter, sim, gw = wired_meter("dlt645-2007", "000000000045", "dlt645", billing_mode="prepaid-meter")
    from core.ledger import account_balance, find_entry
    count0, balance0 = sim.purchase_count, sim.balance_fen
    wallet0 = account_balance(session, meter.account_id)
    entry = cashdesk.desk_recharge(session, meter.account_id, 3000, key="desk:hw:1", actor="test", front="cli")
    session.commit()  # after commit: balance_changed -> meter-side push -> executor (eager)
    assert entry.created
    cmd = session.scalars(select(MeterCommand).where(MeterCommand.meter_id == meter.id)).one()
    assert cmd.kind == "recharge" and cmd.params == {"amount_fen": 3000}
    done = command(session, cmd.id)
    assert done.state == "confirmed"
    assert sim.purchase_count == count0 + 1 and sim.balance_fen - balance0 > 2800
    session.refresh(meter)
    assert meter.purchase_count == count0 + 1
    assert meter.remaining_fen == done.result["remaining_fen"]
    # the 30.00 went into the wallet and on to the meter: wallet -> clearing:meter-credit, once
    assert find_entry(session, f"meter-credit:{cmd.id}") is not None
    assert account_balance(session, meter.account_id) == wallet0


def test_the_executor_also_runs_when_called_inside_a_running_event_loop(session, wired_meter):
    import asyncio
    meter, sim, gw = wired_meter()
    cmd = commands.request(session, meter.id, "relay_off", enqueue=False)
    session.commit()

    async def inside():
        return executor.execute_command(cmd.id)
    assert asyncio.run(inside()) == "confirmed"

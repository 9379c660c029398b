"""Every command attempt is fenced: a worker whose lease ran out sends nothing and changes nothing.

The race these tests reproduce: worker 1 claims a recharge and stalls; its lease runs out, the
retry job hands the command to worker 2, which records the base purchase count, sends the
recharge and confirms it; then worker 1 wakes up. Before fencing, worker 1 read the advanced
count as its own base and sent the recharge a second time (``recharge 5000 #3`` then ``#4``).
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import select, update

from core.models import MeterCommand, MeterCommandEvent
from core.supply import commands
from core.utils import utcnow
from hardware import executor


def states(session, cmd_id):
    session.expire_all()
    return [e.state for e in session.scalars(select(MeterCommandEvent).where(
        MeterCommandEvent.command_id == cmd_id).order_by(MeterCommandEvent.id))]


def command(session, cmd_id) -> MeterCommand:
    session.expire_all()
    return session.get(MeterCommand, cmd_id)


def recharge_frames(sim) -> list[tuple[int, int]]:
    """Count every recharge frame the simulated meter receives (taken or refused): (amount, count)."""
    received: list[tuple[int, int]] = []
    take = sim.recharge

    def counting(amount_fen: int, count: int) -> bool:
        received.append((amount_fen, count))
        return take(amount_fen, count)
    sim.recharge = counting
    return received


def applied_recharges(sim) -> list[str]:
    return [a for a in sim.applied if a.startswith("recharge")]


def test_a_recharge_whose_lease_ran_out_is_sent_once(session, wired_meter, monkeypatch):
    meter, sim, gw = wired_meter("dlt645-2007", "000000000051", "dlt645", billing_mode="prepaid-meter")
    count0 = sim.purchase_count
    frames = recharge_frames(sim)
    cmd = commands.request(session, meter.id, "recharge", {"amount_fen": 5000}, key="race:1",
                           ttl=timedelta(hours=6), enqueue=False)
    session.commit()

    real_attempt_all, real_now = executor._attempt_all, executor.utcnow
    counts: dict = {}
    stalled: list[bool] = []

    async def worker_one_stalls(snaps):
        if not stalled:  # worker 1 stalls past its lease: the retry job gives the command to worker 2 (eager)
            stalled.append(True)
            with monkeypatch.context() as mp:
                mp.setattr(executor, "utcnow", lambda: real_now() + timedelta(hours=2))
                counts.update(executor.retry_due())
        return await real_attempt_all(snaps)
    monkeypatch.setattr(executor, "_attempt_all", worker_one_stalls)

    left = executor.execute_command(cmd.id)  # worker 1
    assert counts["released"] == 1
    assert frames == [(5000, count0 + 1)]  # one recharge frame reached the meter (before: #count0+2 as well)
    assert applied_recharges(sim) == [f"recharge 5000 #{count0 + 1}"]
    assert left == "taken"  # worker 2 confirmed it; worker 1 changed nothing
    c = command(session, cmd.id)
    assert c.state == "confirmed" and c.result["base_count"] == count0
    assert c.lease_owner is None and c.lease_until is None
    assert states(session, cmd.id) == ["pending", "running", "pending", "running", "confirmed"]


def test_a_stale_attempt_cannot_finish_or_overwrite_the_new_attempt(session, wired_meter, monkeypatch):
    meter, sim, gw = wired_meter("dlt645-2007", "000000000052", "dlt645", billing_mode="prepaid-meter")
    count0 = sim.purchase_count
    frames = recharge_frames(sim)
    cmd = commands.request(session, meter.id, "recharge", {"amount_fen": 2000}, enqueue=False)
    session.commit()
    old = executor._claim([cmd.id])[cmd.id]
    assert isinstance(old, executor.Snapshot) and command(session, cmd.id).lease_owner == old.token
    # its lease runs out; the retry job frees the command and a new attempt claims it
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd.id)
                    .values(lease_until=utcnow() - timedelta(seconds=1)))
    session.commit()
    monkeypatch.setattr(executor, "execute_many", lambda ids: None)  # the re-enqueued job does not run yet
    assert executor.retry_due()["released"] == 1
    new = executor._claim([cmd.id])[cmd.id]
    assert isinstance(new, executor.Snapshot) and new.attempt == old.attempt + 1 and new.token != old.token

    # the old attempt may neither send, nor record a base, nor finish the command
    assert executor._fence(old) is False and executor._record_base(old, 999, 0) is None
    assert executor._finish([old], {cmd.id: executor.Outcome("confirmed", "stale", result={"base_count": 999})}) \
        == {cmd.id: "taken"}
    c = command(session, cmd.id)
    assert c.state == "running" and c.lease_owner == new.token and "base_count" not in c.result

    # the new attempt records its base; an old attempt's result never overwrites it
    assert executor._record_base(new, count0, 100) == count0
    assert executor._record_base(new, count0 + 7, 100) == count0  # a stored base is returned, never replaced
    assert executor._finish([new], {cmd.id: executor.Outcome("retry", "x", result={"base_count": 999})}) \
        == {cmd.id: "pending"}
    assert command(session, cmd.id).result["base_count"] == count0
    assert executor._finish([old], {cmd.id: executor.Outcome("confirmed", "stale")}) == {cmd.id: "taken"}
    assert command(session, cmd.id).state == "pending"
    assert frames == []


def test_a_long_batch_renews_its_lease(session, factory, wired_meter, simulator, monkeypatch):
    monkeypatch.setenv("METERPAY_COMMAND_LEASE", "1")
    addresses = [f"00000000006{i}" for i in range(4)]
    gw = simulator("dlt645", [("dlt645-2007", a) for a in addresses], turnaround=0.15)
    site = factory.site()
    wired = [wired_meter("dlt645-2007", a, "dlt645", billing_mode="prepaid-meter", gw=gw, site=site)
             for a in addresses]
    counts0 = [sim.purchase_count for _m, sim, _gw in wired]
    ids = [commands.request(session, m.id, "recharge", {"amount_fen": 1000}, enqueue=False).id for m, _s, _g in wired]
    session.commit()
    result: list = []
    worker = threading.Thread(target=lambda: result.append(executor.execute_many(ids)))
    started = time.monotonic()
    worker.start()
    time.sleep(2.0)  # twice the lease: without renewals every command still waiting would be free now
    assert worker.is_alive(), "the batch should still be running (4 recharges on one slow bus)"
    assert executor.retry_due()["released"] == 0
    session.expire_all()
    leases = session.execute(select(MeterCommand.state, MeterCommand.lease_until).where(MeterCommand.id.in_(ids))).all()
    now = utcnow()
    assert all(state != "running" or until > now for state, until in leases), leases
    worker.join(30)
    assert time.monotonic() - started > 2.0
    assert result == [["confirmed"] * 4]
    assert [applied_recharges(sim) for _m, sim, _g in wired] == [[f"recharge 1000 #{c + 1}"] for c in counts0]
    assert all(command(session, i).lease_owner is None for i in ids)


def test_a_command_whose_worker_died_is_free_one_lease_later(session, wired_meter, monkeypatch):
    monkeypatch.setenv("METERPAY_COMMAND_LEASE", "1")
    meter, sim, gw = wired_meter()
    cmd = commands.request(session, meter.id, "relay_off", enqueue=False)
    session.commit()
    assert isinstance(executor._claim([cmd.id])[cmd.id], executor.Snapshot)  # the worker dies here
    assert executor.retry_due()["released"] == 0  # still within its lease
    time.sleep(1.2)
    counts = executor.retry_due()  # eager: taken over and run at once
    assert counts["released"] == 1
    assert command(session, cmd.id).state == "confirmed"
    assert states(session, cmd.id) == ["pending", "running", "pending", "running", "confirmed"]
    assert sim.applied == ["relay off"]


def test_the_loop_fence_of_batch_lanes_fences_the_same(session, wired_meter):
    """Batch lanes fence on their event loop's own connections (executor.LoopFence): a stale
    attempt is refused, the current one passes and its lease is pushed back."""
    import asyncio

    meter, _sim, _gw = wired_meter("dlt645-2007", "000000000053", "dlt645")
    cmd = commands.request(session, meter.id, "relay_off", {}, enqueue=False)
    session.commit()
    old = executor._claim([cmd.id])[cmd.id]
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd.id)
                    .values(state="pending", lease_owner=None, lease_until=None))
    session.commit()
    new = executor._claim([cmd.id])[cmd.id]
    assert isinstance(old, executor.Snapshot) and isinstance(new, executor.Snapshot)
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd.id)
                    .values(lease_until=utcnow() + timedelta(seconds=1)))
    session.commit()

    async def main():
        fence = executor.LoopFence()
        try:
            return await asyncio.gather(fence(old), fence(new), *(fence(new) for _ in range(10)))
        finally:
            await fence.close()
    got = asyncio.run(main())
    assert got[0] is False and all(got[1:])
    assert command(session, cmd.id).lease_until > utcnow() + timedelta(seconds=10)

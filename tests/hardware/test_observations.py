"""A value read before a newer confirmed command or a newer reading never replaces it (issue 14 item 1)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from core.models import Meter, MeterCommand, Reading
from core.supply import commands
from hardware import aio, executor, poller
from hardware.availability import apply_values
from hardware.values import MeterValues


def test_a_poll_read_before_a_confirmed_trip_does_not_undo_it(session, wired_meter):
    meter, sim, gw = wired_meter()
    assert sim.relay_on
    # the round reads the meter (relay on, current flowing) ...
    results, _ = aio.run(poller.read_all(poller.load_targets(meter_ids=[meter.id])))
    assert results[0].values.relay == "on"
    # ... a trip is sent and confirmed by its read-back ...
    cmd = commands.request(session, meter.id, "relay_off", {"reason": "test"})
    session.commit()  # eager jobs: the executor runs now
    executor.run_pending()
    session.expire_all()
    assert session.get(MeterCommand, cmd.id).state == "confirmed"
    # ... and only then is the older round stored
    poller.store(results)
    session.expire_all()
    m = session.get(Meter, meter.id)
    assert m.relay_state == "off"
    assert m.live["relay"] == "off"
    assert m.live.get("current_a") in (0, None) or Decimal(str(m.live["current_a"])) == 0
    # the reading itself is still history and billed
    assert session.scalar(select(Reading.id).where(Reading.meter_id == meter.id,
                                                   Reading.taken_at == results[0].taken_at)) is not None


def test_an_older_round_stored_after_a_newer_one_changes_nothing(session, wired_meter):
    meter, sim, gw = wired_meter("dlt645-2007", "000000000042", "dlt645", billing_mode="prepaid-meter")
    targets = poller.load_targets(meter_ids=[meter.id])
    r_old, _ = aio.run(poller.read_all(targets))
    sim.balance_fen += 1000
    sim.purchase_count += 1
    r_new, _ = aio.run(poller.read_all(targets))
    poller.store(r_new)
    poller.store(r_old)
    session.expire_all()
    m = session.get(Meter, meter.id)
    assert m.remaining_fen == r_new[0].values.remaining_fen != r_old[0].values.remaining_fen
    assert m.purchase_count == r_new[0].values.purchase_count == r_old[0].values.purchase_count + 1
    assert m.prepaid_observed_at == r_new[0].read_at


def test_apply_values_keeps_the_newest_per_group():
    t0 = datetime(2026, 3, 10, 2, 0, 0, 500, tzinfo=UTC)
    m = Meter(relay_state="unknown", live={}, remaining_fen=None, purchase_count=None)
    assert apply_values(m, MeterValues(relay="off", remaining_amount=Decimal("12.34"), purchase_count=3), t0) \
        == {"supply", "prepaid", "live"}
    # older: nothing of it applies
    assert apply_values(m, MeterValues(relay="on", remaining_amount=Decimal("50"), purchase_count=2),
                        t0 - timedelta(microseconds=1)) == set()
    assert (m.relay_state, m.remaining_fen, m.purchase_count) == ("off", 1234, 3)
    # the same time applies
    assert "supply" in apply_values(m, MeterValues(relay="on"), t0)
    assert m.relay_state == "on"
    # a newer remaining-only update leaves the relay and its time alone
    later = t0 + timedelta(seconds=5)
    applied = apply_values(m, MeterValues(remaining_amount=Decimal("1.00")), later)
    assert "prepaid" in applied and "supply" not in applied
    assert m.relay_state == "on" and m.supply_observed_at == t0 and m.remaining_fen == 100
    assert m.prepaid_observed_at == later


def test_a_round_being_stored_while_a_trip_is_confirmed_does_not_undo_it(session, wired_meter, pg_only,
                                                                          monkeypatch):
    """Real threads on PostgreSQL: the round has loaded the meter (relay on, read before the trip)
    when the trip's finish commits; without the row lock the round then writes "on" over it."""
    import threading

    from hardware import availability

    monkeypatch.setenv("METERPAY_ENFORCE_RETRIES", "0")  # no repeat may hide an overwrite
    meter, sim, gw = wired_meter()
    results, _ = aio.run(poller.read_all(poller.load_targets(meter_ids=[meter.id])))
    cmd = commands.request(session, meter.id, "relay_off", {"reason": "test"}, enqueue=False)
    session.commit()
    loaded, go = threading.Event(), threading.Event()
    real = availability.record_success

    def paused(*args, **kwargs):
        loaded.set()
        go.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(poller, "record_success", paused)
    store = threading.Thread(target=poller.store, args=(results,))
    store.start()
    assert loaded.wait(10)
    trip = threading.Thread(target=executor.run_pending)
    trip.start()
    trip.join(3)  # with the lock its finish waits for the round; without, it commits "off" now
    go.set()
    store.join(30)
    trip.join(30)
    assert not store.is_alive() and not trip.is_alive()
    session.expire_all()
    assert session.get(MeterCommand, cmd.id).state == "confirmed"
    m = session.get(Meter, meter.id)
    assert m.relay_state == "off" and m.live["relay"] == "off"

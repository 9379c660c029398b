"""The poller reads every meter of a due site, keeps availability honest, and feeds billing."""
from __future__ import annotations

import itertools
import time
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from core import signals
from core.models import Gateway, LedgerAccount, Meter, MeterEvent, Reading
from core.tariffs.store import add_plan
from hardware import poller


def test_the_poller_feeds_billing_and_the_wallet_pays_for_the_usage(session, wired_meter):
    add_plan(session, "flat-0.6", {"kind": "flat", "unit": "kWh", "price": "0.6"})
    session.commit()
    meter, sim, gw = wired_meter(tariff="flat-0.6", balance_fen=100_000)
    first = poller.poll(meter_ids=[meter.id])
    assert first.ok == 1 and first.billing
    time.sleep(1.2)  # the simulator runs 60x: about a minute of load
    poller.poll(meter_ids=[meter.id])
    session.expire_all()
    readings = session.scalars(select(Reading).where(Reading.meter_id == meter.id).order_by(Reading.taken_at)).all()
    assert len(readings) == 2 and {r.source for r in readings} == {"poll"}
    assert readings[1].total > readings[0].total
    assert readings[1].peak is not None  # the rate registers went along
    used = readings[1].total - readings[0].total
    wallet = session.scalar(select(LedgerAccount).where(LedgerAccount.account_id == meter.account_id))
    assert 100_000 - wallet.balance_fen == int((used * 60).quantize(1, rounding="ROUND_HALF_UP"))
    session.refresh(meter)
    assert meter.online and Decimal(meter.live["total_kwh"]) == readings[1].total
    assert set(meter.live) == {"total_kwh", "periods", "voltage_v", "current_a", "power_kw", "power_factor", "relay"}


def test_a_meter_is_offline_after_n_failed_polls_and_online_on_its_next_good_read(session, wired_meter,
                                                                                  monkeypatch):
    monkeypatch.setenv("METERPAY_OFFLINE_AFTER", "2")
    # Readings are kept to the second and the failed polls fail fast: without a clock that moves, the
    # first and the last good read can fall in the same second and be one reading.
    start, ticks = poller._now(), itertools.count()
    monkeypatch.setattr(poller, "_now", lambda: start + timedelta(minutes=next(ticks)))
    seen = []
    listener = signals.on("meter_online_changed")(lambda meter_id, online: seen.append(online))
    try:
        meter, sim, gw = wired_meter("dlt645-2007", "000000000005", "dlt645")
        poller.poll(meter_ids=[meter.id])
        sim.offline = True
        poller.poll(meter_ids=[meter.id])
        session.refresh(meter)
        assert meter.online and meter.consecutive_failures == 1
        poller.poll(meter_ids=[meter.id])
        session.refresh(meter)
        assert not meter.online
        sim.offline = False
        poller.poll(meter_ids=[meter.id])
        session.refresh(meter)
        assert meter.online and meter.consecutive_failures == 0
    finally:
        signals.disconnect("meter_online_changed", listener)
    kinds = [e.kind for e in session.scalars(select(MeterEvent).where(MeterEvent.meter_id == meter.id)
                                             .order_by(MeterEvent.id))]
    assert kinds == ["online", "offline", "online"]
    assert seen == [True, False, True]
    assert len(session.scalars(select(Reading).where(Reading.meter_id == meter.id)).all()) == 2


def test_garbage_and_wrong_address_replies_are_never_readings(session, wired_meter):
    meter, sim, gw = wired_meter("cjt188-water", "00000000000011", "cjt188", kind="water")
    for fault in ("garbage", "wrong_address", "bad_checksum"):
        sim.script.append(fault)
        report = poller.poll(meter_ids=[meter.id])
        assert report.failed == 1 and report.ok == 0
    assert session.scalars(select(Reading).where(Reading.meter_id == meter.id)).all() == []
    report = poller.poll(meter_ids=[meter.id])
    assert report.ok == 1 and report.stats.replies == 1
    assert len(session.scalars(select(Reading).where(Reading.meter_id == meter.id)).all()) == 1


def test_gateways_are_read_in_parallel_and_a_dead_one_fails_fast(session, wired_meter, simulator, factory):
    site = factory.site()
    m1, _, gw1 = wired_meter(site=site)
    m2, _, gw2 = wired_meter("acrel-dtsy1352", "2", site=site)
    gw2.sim.set_down(gw2, True)
    report = poller.poll(site_ids=[site.id])
    assert report.ok == 1 and report.failed == 1 and report.stats.connect_failures >= 1
    session.expire_all()
    online = {g.url: g.online for g in session.scalars(select(Gateway))}
    assert online == {gw1.url: True, gw2.url: False}


def test_a_site_is_polled_once_per_its_interval(session, wired_meter, factory):
    site = factory.site(poll_interval_minutes=60)
    meter, sim, gw = wired_meter(site=site)
    poller._local_slots.clear()
    first = poller.poll_due()
    second = poller.poll_due()
    assert first["ok"] == 1 and second["meters"] == 0


def test_a_site_is_polled_once_per_slot_across_schedulers_with_redis(session, wired_meter, factory, redis_url):
    site = factory.site(poll_interval_minutes=30)
    wired_meter(site=site)
    poller._local_slots.clear()
    assert poller.poll_due()["ok"] == 1
    poller._local_slots.clear()  # a second process knows nothing locally
    assert poller.poll_due()["meters"] == 0


def test_poll_interval_comes_from_site_settings_with_a_default(factory):
    assert poller.poll_interval_minutes(factory.site()) == 15
    assert poller.poll_interval_minutes(factory.site(poll_interval_minutes=5)) == 5
    assert poller.poll_interval_minutes(factory.site(poll_interval_minutes="bad")) == 15


def test_under_random_faults_every_stored_reading_is_one_the_meter_really_had(session, factory, simulator):
    from core.sites.accounts import MeterSpec
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", str(i)) for i in range(1, 6)], fault_rate=0.4)
    site = factory.site()
    start = {a: m.total_kwh for a, m in gw.meters.items()}
    for a in gw.meters:
        factory.account(room=factory.room(site, building=f"F{a}"), meters=(MeterSpec(
            serial=f"F-{gw.port}-{a}", gateway=gw.url, address=a),))
    failed = 0
    for _ in range(6):
        failed += poller.poll(site_ids=[site.id]).failed
    assert failed > 0  # faults happened
    rows = session.execute(select(Meter.address, Reading.total).join(Reading, Reading.meter_id == Meter.id)).all()
    assert rows
    for address, total in rows:
        assert Decimal(str(start[address])) - 1 <= total <= Decimal(str(gw.meter(address).total_kwh)) + 1


def test_with_redis_a_big_round_is_split_into_gateway_shards(session, wired_meter, factory, redis_url, monkeypatch):
    monkeypatch.setenv("METERPAY_POLL_SHARD_GATEWAYS", "1")
    site = factory.site(poll_interval_minutes=30)
    meters = [wired_meter(site=site, address=str(i))[0] for i in (1, 2, 3)]
    poller._local_slots.clear()
    assert poller.poll_due() == {"shards": 3, "gateways": 3}  # eager jobs: the shards ran already
    for m in meters:
        assert session.scalars(select(Reading).where(Reading.meter_id == m.id)).all()


def test_one_meter_whose_billing_fails_does_not_spoil_the_round(session, wired_meter, factory, monkeypatch):
    import core.billing
    site = factory.site()
    good, _, _ = wired_meter(site=site, address="1")
    bad, _, _ = wired_meter(site=site, address="2")
    real = core.billing.ingest

    def flaky(s, meter_id, *args, **kwargs):
        if meter_id == bad.id:
            raise RuntimeError("billing trouble")
        return real(s, meter_id, *args, **kwargs)
    monkeypatch.setattr(core.billing, "ingest", flaky)
    report = poller.poll(site_ids=[site.id])
    assert report.ok == 2 and report.billing == {"accepted": 1, "error": 1}
    assert session.scalars(select(Reading).where(Reading.meter_id == good.id)).all()
    assert not session.scalars(select(Reading).where(Reading.meter_id == bad.id)).all()
    session.refresh(good)
    assert good.online


def test_a_big_round_bills_in_one_batch_with_the_same_results(session, wired_meter, monkeypatch):
    add_plan(session, "flat-0.8", {"kind": "flat", "unit": "kWh", "price": "0.8"})
    session.commit()
    monkeypatch.setattr(poller, "BULK_FROM", 1)
    billed = []
    listener = signals.on("reading_billed")(lambda meter_id, account_id: billed.append(meter_id))
    try:
        meter, sim, gw = wired_meter(tariff="flat-0.8", balance_fen=50_000)
        assert poller.poll(meter_ids=[meter.id]).billing == {"accepted": 1}
        time.sleep(1.0)
        assert poller.poll(meter_ids=[meter.id]).billing == {"accepted": 1}
    finally:
        signals.disconnect("reading_billed", listener)
    assert billed == [meter.id, meter.id]
    readings = session.scalars(select(Reading).where(Reading.meter_id == meter.id).order_by(Reading.taken_at)).all()
    used = readings[1].total - readings[0].total
    wallet = session.scalar(select(LedgerAccount).where(LedgerAccount.account_id == meter.account_id))
    assert 50_000 - wallet.balance_fen == int((used * 80).quantize(1, rounding="ROUND_HALF_UP"))


def test_each_gateway_read_is_observed_with_its_meters_failures_and_time():
    """The per-gateway poll metrics (meterpay_poll_gateway_*) are fed from here."""
    import asyncio

    from core import jobs
    from hardware.poller import Target, read_gateway
    seen = []

    def watch(event, **fields):
        if event == "poll_gateway":
            seen.append(fields)
    jobs.add_observer(watch)
    try:
        url = "tcp://127.0.0.1:1"  # nothing listens there: both reads fail
        targets = [Target(1, "acrel-ddsy1352", "1", url, "modbus-rtu"), Target(2, "acrel-ddsy1352", "2", url, "modbus-rtu")]
        asyncio.run(read_gateway(url, "modbus-rtu", targets))
    finally:
        jobs.remove_observer(watch)
    assert len(seen) == 1
    assert seen[0]["gateway"] == "tcp://127.0.0.1:1" and seen[0]["meters"] == 2 and seen[0]["failed"] == 2
    assert seen[0]["seconds"] >= 0

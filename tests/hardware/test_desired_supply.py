"""Desired supply is enforced: a relay found in the other state is alarmed and commanded again, a
bounded number of times, unless keep-power or a manager's later command says otherwise (issue 14 item 2)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core import clock
from core.models import Meter, MeterCommand, MeterEvent, Notification
from core.sites.managers import create_manager
from core.supply import auto, control, enforce
from hardware import executor, poller

TUESDAY_10 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # Tue 10:00 Asia/Shanghai, a working day


@pytest.fixture(autouse=True)
def _clock(monkeypatch):
    monkeypatch.setenv("METERPAY_ENFORCE_BACKOFF_MINUTES", "0")
    clock.set_now(TUESDAY_10)
    yield
    clock.set_now(None)


def enforced(session, meter_id) -> list[MeterCommand]:
    session.expire_all()
    return list(session.scalars(select(MeterCommand).where(MeterCommand.meter_id == meter_id,
                                                           MeterCommand.idempotency_key.like("enforce:%"))
                                .order_by(MeterCommand.id)))


def mismatch_events(session, meter_id) -> list[MeterEvent]:
    return list(session.scalars(select(MeterEvent).where(MeterEvent.meter_id == meter_id,
                                                         MeterEvent.kind == "relay_mismatch")))


def tripped(session, wired_meter, factory, **kw):
    site = factory.site("Enforce site")
    meter, sim, gw = wired_meter(site=site, **kw)
    control.trip(session, meter.account_id, actor="mgr", front="admin")
    session.commit()  # eager jobs: confirmed now
    executor.run_pending()
    session.expire_all()
    assert not sim.relay_on and session.get(Meter, meter.id).relay_state == "off"
    return site, meter, sim


def base_command(session, meter_id) -> MeterCommand:
    return session.scalars(select(MeterCommand).where(MeterCommand.meter_id == meter_id,
                                                      MeterCommand.requested_by == "mgr")
                           .order_by(MeterCommand.id.desc())).first()


def test_a_relay_switched_on_at_the_box_is_alarmed_and_cut_again(session, wired_meter, factory):
    site, meter, sim = tripped(session, wired_meter, factory)
    create_manager(session, "dora", "password123", sites=[site.name]).wechat_openid = "o-dora"
    session.commit()
    base = base_command(session, meter.id)
    sim.relay_on = True  # someone closed it at the box
    poller.poll(meter_ids=[meter.id])
    cmds = enforced(session, meter.id)
    assert [c.idempotency_key for c in cmds] == [f"enforce:{meter.id}:{base.id}:1"]
    assert cmds[0].state == "confirmed" and cmds[0].kind == "relay_off" and cmds[0].requested_by == "system:enforce"
    assert sim.relay_on is False
    events = mismatch_events(session, meter.id)
    assert len(events) == 1
    assert events[0].detail["desired"] == "off" and events[0].detail["observed"] == "on"
    assert events[0].detail["command_id"] == base.id
    notes = session.scalars(select(Notification).where(
        Notification.key.like(f"device:relay_mismatch:{meter.id}:state:{base.id}:%"))).all()
    assert len(notes) == 1
    m = session.get(Meter, meter.id)
    assert m.relay_state == "off" and m.mismatch_since is None  # the repeat's read-back cleared it
    poller.poll(meter_ids=[meter.id])  # agrees now: nothing more
    assert len(enforced(session, meter.id)) == 1 and len(mismatch_events(session, meter.id)) == 1
    assert session.get(Meter, meter.id).mismatch_since is None


def test_re_issue_is_bounded(session, wired_meter, factory, monkeypatch):
    monkeypatch.setenv("METERPAY_ENFORCE_RETRIES", "2")
    _site, meter, sim = tripped(session, wired_meter, factory)
    for _ in range(4):
        sim.relay_on = True
        poller.poll(meter_ids=[meter.id])
    assert len(enforced(session, meter.id)) == 2
    assert len(mismatch_events(session, meter.id)) == 1
    m = session.get(Meter, meter.id)
    assert m.mismatch_since is not None and m.relay_state == "on"


def test_re_issue_backs_off(session, wired_meter, factory, monkeypatch):
    monkeypatch.setenv("METERPAY_ENFORCE_BACKOFF_MINUTES", "5")
    _site, meter, sim = tripped(session, wired_meter, factory)
    seen = []
    for minutes in (0, 1, 6):
        clock.set_now(TUESDAY_10 + timedelta(minutes=minutes))
        sim.relay_on = True
        poller.poll(meter_ids=[meter.id])
        seen.append(len(enforced(session, meter.id)))
    assert seen == [1, 1, 2]


def test_keep_power_is_never_cut_again(session, wired_meter, factory):
    _site, meter, sim = tripped(session, wired_meter, factory)
    control.set_keep_power(session, meter.account_id, True, actor="mgr")
    session.commit()
    sim.relay_on = True
    poller.poll(meter_ids=[meter.id])
    assert enforced(session, meter.id) == []
    assert mismatch_events(session, meter.id) == []
    assert sim.relay_on and session.get(Meter, meter.id).mismatch_since is None


def test_a_later_manager_restore_wins(session, wired_meter, factory, monkeypatch):
    monkeypatch.setenv("METERPAY_ENFORCE_RETRIES", "0")  # the mismatch stays: nothing repeats it
    _site, meter, sim = tripped(session, wired_meter, factory)
    sim.relay_on = True
    poller.poll(meter_ids=[meter.id])
    session.expire_all()
    assert session.get(Meter, meter.id).mismatch_since is not None
    monkeypatch.setenv("METERPAY_ENFORCE_RETRIES", "3")
    control.restore(session, meter.account_id, actor="mgr", front="admin")
    session.commit()
    executor.run_pending()
    poller.poll(meter_ids=[meter.id])
    assert enforced(session, meter.id) == []
    m = session.get(Meter, meter.id)
    assert m.relay_state == "on" and m.mismatch_since is None and sim.relay_on


def test_a_meter_side_credit_cut_is_not_a_mismatch(session, wired_meter, factory):
    site = factory.site("Enforce site")
    meter, sim, _gw = wired_meter("dlt645-2007", "000000000042", "dlt645", billing_mode="prepaid-meter", site=site)
    control.restore(session, meter.account_id, actor="mgr", front="admin")
    session.commit()
    executor.run_pending()
    sim.balance_fen = -1
    sim.relay_on = False  # the meter cut itself: its own credit ran out
    poller.poll(meter_ids=[meter.id])
    assert enforced(session, meter.id) == []
    m = session.get(Meter, meter.id)
    assert m.relay_state == "off" and m.mismatch_since is None


def test_an_automatic_cut_is_not_re_issued_in_friendly_hours(session, wired_meter, factory):
    site = factory.site("Enforce site")
    meter, sim, _gw = wired_meter(site=site, balance_fen=0)
    assert auto.evaluate(session, meter.account_id) == "cut"
    session.commit()
    executor.run_pending()
    assert not sim.relay_on
    sim.relay_on = True
    clock.set_now(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))  # 23:00 local: a friendly night
    poller.poll(meter_ids=[meter.id])
    assert enforced(session, meter.id) == []
    assert len(mismatch_events(session, meter.id)) == 1  # alarmed all the same
    clock.set_now(datetime(2026, 3, 11, 0, 0, tzinfo=UTC))  # Wed 08:00 local
    sim.relay_on = True
    poller.poll(meter_ids=[meter.id])
    cmds = enforced(session, meter.id)
    assert len(cmds) == 1 and cmds[0].kind == "relay_off" and not sim.relay_on


def test_the_sweep_repeats_a_disagreement_stored_between_polls(session, wired_meter, factory):
    _site, meter, sim = tripped(session, wired_meter, factory)
    sim.relay_on = True
    # a round stored while the trip was still open skips the check; the stored state disagrees
    m = session.get(Meter, meter.id)
    m.relay_state = "on"
    session.commit()
    assert enforce.sweep() == {"candidates": 1, "reissued": 1}
    cmds = enforced(session, meter.id)
    assert len(cmds) == 1 and cmds[0].state == "confirmed" and not sim.relay_on
    assert enforce.sweep() == {"candidates": 0}
    assert len(mismatch_events(session, meter.id)) == 1

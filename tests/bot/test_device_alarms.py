"""Device alarms reach the site's managers: meter offline, consumption while tripped, tamper."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from core import signals
from core.db import utcnow
from core.models import Meter, MeterCommand, MeterEvent, Reading
from core.sites.managers import create_manager
from core.supply import commands


@pytest.fixture
def site_with_manager(factory, session):
    site = factory.site("Device site")
    account = factory.account(room=factory.room(site, "D101"), balance_fen=10000)
    create_manager(session, "dora", "password123", sites=[site.name]).wechat_openid = "o-dora"
    create_manager(session, "other", "password123", sites=[factory.site("Elsewhere").name]).wechat_openid = "o-other"
    session.commit()
    return account


def test_a_meter_going_offline_tells_its_site_managers_once(session, sandbox, site_with_manager):
    meter = site_with_manager.meters[0]
    meter.online, meter.last_seen_at = False, utcnow()
    session.commit()
    signals.dispatch("meter_online_changed", meter_id=meter.id, online=False)
    signals.dispatch("meter_online_changed", meter_id=meter.id, online=False)  # the same episode again
    sent = sandbox.sent("template")
    assert [m["touser"] for m in sent] == ["o-dora"]
    assert sent[0]["template_id"] == "tpl-device" and meter.serial in sent[0]["data"]["remark"]["value"]


def _confirmed_trip(session, meter) -> MeterCommand:
    cmd = commands.request(session, meter.id, "relay_off", {"reason": "test"})
    session.flush()
    commands.transition(session, cmd, "running")
    commands.transition(session, cmd, "confirmed", "read back: off")
    session.commit()
    return cmd


def test_consumption_while_tripped_raises_a_relay_mismatch_once(session, sandbox, site_with_manager):
    meter = site_with_manager.meters[0]
    cmd = _confirmed_trip(session, meter)
    t = cmd.finished_at
    for i, total in enumerate(("100.00", "100.00", "101.50", "103.00")):
        session.add(Reading(meter_id=meter.id, taken_at=t + timedelta(minutes=5 * (i + 1)), total=Decimal(total)))
        session.commit()
        signals.dispatch("reading_billed", meter_id=meter.id, account_id=site_with_manager.id)
    events = session.scalars(select(MeterEvent).where(MeterEvent.meter_id == meter.id,
                                                      MeterEvent.kind == "relay_mismatch")).all()
    assert len(events) == 1 and events[0].detail["command_id"] == cmd.id
    assert [m["touser"] for m in sandbox.sent("template")] == ["o-dora"]


def test_a_still_register_after_a_trip_is_no_alarm(session, sandbox, site_with_manager):
    meter = site_with_manager.meters[0]
    cmd = _confirmed_trip(session, meter)
    for i in range(3):
        session.add(Reading(meter_id=meter.id, taken_at=cmd.finished_at + timedelta(minutes=i + 1),
                            total=Decimal("100.00")))
    session.commit()
    signals.dispatch("reading_billed", meter_id=meter.id, account_id=site_with_manager.id)
    assert sandbox.sent("template") == []


def test_tamper_reported_by_the_profile(session, sandbox, site_with_manager):
    meter = session.get(Meter, site_with_manager.meters[0].id)
    meter.live = {"tamper": True}
    session.commit()
    signals.dispatch("reading_billed", meter_id=meter.id, account_id=site_with_manager.id)
    signals.dispatch("reading_billed", meter_id=meter.id, account_id=site_with_manager.id)
    assert len(session.scalars(select(MeterEvent).where(MeterEvent.kind == "tamper")).all()) == 1
    assert len(sandbox.sent("template")) == 1


def test_a_poll_round_of_readings_is_checked_in_one_batch(session, sandbox, site_with_manager, factory):
    """The poller publishes a round's reading_billed at once: the batch form looks only at meters
    commanded off or reporting tamper, and raises exactly what one dispatch per reading would."""
    tripped = site_with_manager.meters[0]
    site = session.get(Meter, tripped.id).site_id
    from core.models import Site
    others = [factory.account(room=factory.room(session.get(Site, site), f"D2{i:02d}"), balance_fen=5000).meters[0]
              for i in range(6)]
    tampered = session.get(Meter, others[0].id)
    tampered.live = {"tamper": True}
    session.commit()
    cmd = _confirmed_trip(session, tripped)
    for i, total in enumerate(("100.00", "102.00")):
        session.add(Reading(meter_id=tripped.id, taken_at=cmd.finished_at + timedelta(minutes=i + 1),
                            total=Decimal(total)))
    session.commit()
    payloads = [{"meter_id": m.id, "account_id": m.account_id} for m in [tripped, *others]]
    signals.dispatch_many("reading_billed", payloads)
    signals.dispatch_many("reading_billed", payloads)  # the next round: nothing new
    kinds = sorted(e.kind for e in session.scalars(select(MeterEvent).where(
        MeterEvent.kind.in_(("relay_mismatch", "tamper")))))
    assert kinds == ["relay_mismatch", "tamper"]
    assert len(sandbox.sent("template")) == 2

"""Automatic supply control: cut at zero (or past the emergency credit), not during friendly
hours or keep-power, cut later at the next allowed time, restore when a recharge lifts the
balance. Asserted on the command rows the outbox receives; the clock is injected."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from core.ledger import cashdesk
from core.models import AuditLog, MeterCommand, SupplyControl
from core.supply import auto as supply_auto
from core.supply import control as supply

UTC = UTC
WEDNESDAY_NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)     # 12:00 Shanghai, a working day
WEDNESDAY_23H = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)     # 23:00 Shanghai
THURSDAY_0659 = datetime(2026, 11, 25, 22, 59, tzinfo=UTC)    # 06:59 Shanghai
THURSDAY_0700 = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)     # 07:00 Shanghai
NIGHTS = {"friendly_hours": {"nights": "22:00-07:00", "weekends": True, "holidays": True}}


def _kinds(session):
    session.expire_all()
    return [c.kind for c in session.scalars(select(MeterCommand).order_by(MeterCommand.id))]


def _state(session, account):
    session.expire_all()
    return session.scalar(select(SupplyControl).where(SupplyControl.account_id == account.id))


def _spend(session, account, fen, n):
    cashdesk.consume(session, account.id, fen, key=f"use:{account.id}:{n}")
    session.commit()


def test_cut_at_zero_and_restore_on_recharge(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=1000)
    _spend(session, a, 600, 1)
    assert _kinds(session) == []
    _spend(session, a, 400, 2)                                   # exactly zero
    assert _kinds(session) == ["relay_off"]
    _spend(session, a, 100, 3)                                   # deeper: no second cut
    assert _kinds(session) == ["relay_off"]
    cashdesk.desk_recharge(session, a.id, 5000, key="topup")
    session.commit()
    assert _kinds(session) == ["relay_off", "relay_on"]
    assert _state(session, a).state == "on"
    audit = [(r.action, r.actor) for r in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert ("trip", "system:auto-supply") in audit and ("restore", "system:auto-supply") in audit


def test_a_water_meter_closes_its_valve(session, sandbox, factory, clock_at):
    from core.sites.accounts import MeterSpec
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100, meters=(MeterSpec(serial="W-1", kind="water", profile="cjt188-water"),))
    _spend(session, a, 100, 1)
    assert _kinds(session) == ["valve_close"]
    cashdesk.desk_recharge(session, a.id, 1000, key="w-topup")
    session.commit()
    assert _kinds(session) == ["valve_close", "valve_open"]


def test_emergency_credit_moves_the_cut_line(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    site = factory.site(emergency_credit_fen=1000)
    a = factory.account(site=site, balance_fen=500)
    _spend(session, a, 1000, 1)                                  # -5.00: inside the emergency credit
    assert _kinds(session) == []
    _spend(session, a, 500, 2)                                   # -10.00: credit used up
    assert _kinds(session) == ["relay_off"]


def test_restore_needs_the_balance_above_the_restore_line(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    site = factory.site(restore_above_fen=2000)
    a = factory.account(site=site, balance_fen=100)
    _spend(session, a, 100, 1)
    cashdesk.desk_recharge(session, a.id, 1500, key="small")     # 15.00: not enough
    session.commit()
    assert _kinds(session) == ["relay_off"]
    cashdesk.desk_recharge(session, a.id, 1000, key="enough")    # 25.00
    session.commit()
    assert _kinds(session) == ["relay_off", "relay_on"]


def test_friendly_hours_defer_the_cut_to_the_next_allowed_time(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_23H)
    a = factory.account(site=factory.site(**NIGHTS), balance_fen=100)
    _spend(session, a, 100, 1)
    state = _state(session, a)
    assert _kinds(session) == [] and state.state == "deferred" and state.due_at == THURSDAY_0700
    assert supply_auto.run_due(THURSDAY_0659) == {}
    assert _kinds(session) == []
    clock_at(THURSDAY_0700)
    assert supply_auto.run_due() == {"cut": 1}
    assert _kinds(session) == ["relay_off"]
    assert supply_auto.run_due(THURSDAY_0700 + timedelta(hours=1)) == {}   # done once
    assert _kinds(session) == ["relay_off"]


def test_a_recharge_during_friendly_hours_cancels_the_deferred_cut(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_23H)
    a = factory.account(site=factory.site(**NIGHTS), balance_fen=100)
    _spend(session, a, 100, 1)
    cashdesk.desk_recharge(session, a.id, 2000, key="night-topup")
    session.commit()
    assert _state(session, a).state == "on"
    clock_at(THURSDAY_0700)
    supply_auto.run_due()
    assert _kinds(session) == []


def test_a_public_holiday_defers_until_the_first_working_morning(session, sandbox, factory, clock_at):
    clock_at(datetime(2026, 10, 2, 4, 0, tzinfo=UTC))            # National Day holiday, noon
    a = factory.account(site=factory.site(**NIGHTS), balance_fen=100)
    _spend(session, a, 100, 1)
    # The holiday runs 1-7 October; 8 October is a working day, cut at 07:00 after the night.
    assert _state(session, a).due_at == datetime(2026, 10, 7, 23, 0, tzinfo=UTC)


def test_keep_power_holds_the_cut_until_it_is_switched_off(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100)
    supply.set_keep_power(session, a.id, True, actor="manager:alice", front="admin")
    session.commit()
    _spend(session, a, 200, 1)
    assert _kinds(session) == [] and _state(session, a).state == "held"
    assert supply_auto.run_due() == {"held": 1}
    supply.set_keep_power(session, a.id, False, actor="manager:alice", front="admin")
    session.commit()
    assert supply_auto.run_due() == {"cut": 1}
    assert _kinds(session) == ["relay_off"]


def test_a_manual_cut_is_not_undone_by_a_recharge(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=5000)
    supply.trip(session, a.id, actor="manager:alice", front="admin")
    session.commit()
    cashdesk.desk_recharge(session, a.id, 1000, key="after-manual")
    session.commit()
    assert _kinds(session) == ["relay_off"]


def test_the_tenant_hears_of_the_cut_and_the_restore(session, sandbox, factory, clock_at):
    from core.models import Tenant
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100)
    session.get(Tenant, a.tenant_id).notify_channels = ["sms"]
    session.commit()
    _spend(session, a, 100, 1)
    cashdesk.desk_recharge(session, a.id, 1000, key="hear")
    session.commit()
    texts = [m["TemplateParam"] for m in sandbox.sent("sms")]
    assert any("已停止供电" in t for t in texts) and any("已恢复供电" in t for t in texts)


def test_postpaid_accounts_are_never_cut(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100, billing_mode="postpaid")
    _spend(session, a, 5000, 1)
    assert _kinds(session) == []


def _end(session, kind, state):
    from core.supply import commands
    cmd = session.scalar(select(MeterCommand).where(MeterCommand.kind == kind).order_by(MeterCommand.id.desc()))
    commands.transition(session, cmd, state, "meter did not answer")
    session.commit()


def test_an_automatic_cut_the_meter_never_confirmed_is_sent_again_once(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100)
    _spend(session, a, 100, 1)
    _end(session, "relay_off", "expired")
    assert supply_auto.run_due() == {"cut_resent": 1}
    assert _kinds(session) == ["relay_off", "relay_off"]
    assert supply_auto.run_due() == {}                        # the new command is pending: nothing more
    assert _kinds(session) == ["relay_off", "relay_off"]


def test_a_lost_restore_is_sent_again_so_a_paying_tenant_gets_power(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100)
    _spend(session, a, 100, 1)
    cashdesk.desk_recharge(session, a.id, 5000, key="paid")
    session.commit()
    _end(session, "relay_on", "failed")
    assert supply_auto.run_due() == {"restore_resent": 1}
    assert _kinds(session) == ["relay_off", "relay_on", "relay_on"]


def test_a_lost_cut_is_not_resent_once_the_tenant_has_paid(session, sandbox, factory, clock_at):
    clock_at(WEDNESDAY_NOON)
    a = factory.account(balance_fen=100)
    _spend(session, a, 100, 1)
    _end(session, "relay_off", "expired")
    cashdesk.desk_recharge(session, a.id, 5000, key="paid-later")
    session.commit()
    supply_auto.run_due()
    assert "relay_off" not in _kinds(session)[1:]


def test_a_bulk_import_that_crosses_the_lines_still_cuts_and_alarms_with_one_job_per_chunk(
        session, sandbox, factory, clock_at, monkeypatch):
    """Bulk billing publishes its balance changes as one job per chunk (run in line in eager test
    mode); the alarms and the cut still happen, and an account left above every line is untouched."""
    from core import jobs, signals
    from core.billing.csv_import import import_text
    from core.models import AlarmState, Notification
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan

    clock_at(WEDNESDAY_NOON)
    add_plan(session, "bulk-flat", {"kind": "flat", "unit": "kWh", "price": "0.6"})
    session.commit()
    poor = factory.account(balance_fen=1000, tariff="bulk-flat", meters=(MeterSpec(serial="BULK-POOR"),))
    mid = factory.account(balance_fen=6000, tariff="bulk-flat", meters=(MeterSpec(serial="BULK-MID"),))
    rich = factory.account(balance_fen=100_000, tariff="bulk-flat", meters=(MeterSpec(serial="BULK-RICH"),))
    jobs_enqueued, single_dispatches = [], []
    real_enqueue, real_dispatch = jobs.enqueue, signals.dispatch

    def spy_enqueue(func, *args, **kw):
        jobs_enqueued.append((jobs.dotted(func), kw.get("queue")))
        return real_enqueue(func, *args, **kw)

    def spy_dispatch(event, **payload):
        single_dispatches.append((event, payload.get("account_id")))
        return real_dispatch(event, **payload)
    monkeypatch.setattr(jobs, "enqueue", spy_enqueue)
    monkeypatch.setattr(signals, "dispatch", spy_dispatch)
    # 10 kWh = 6.00 yuan per step; three readings per meter, one time per chunk of three rows
    csv_text = "meter_serial,taken_at,total\n" + "".join(
        f"{serial},2026-11-25T{8 + h:02d}:00:00+08:00,{100 + used[h]}\n"
        for h in range(3)
        for serial, used in (("BULK-POOR", (0, 10, 20)), ("BULK-MID", (0, 0, 20)), ("BULK-RICH", (0, 10, 20))))
    summary = import_text(csv_text, chunk_size=3)
    assert summary.accepted == 9 and summary.billed_fen == 3600

    billed_chunks = [j for j in jobs_enqueued if j[0] == "core.signals.dispatch_many"]
    assert billed_chunks == [("core.signals.dispatch_many", "notify")] * 2   # chunks 2 and 3; chunk 1 is baselines
    assert [e for e in single_dispatches if e[0] == "balance_changed"] == []  # nothing per account in line
    assert _kinds(session) == ["relay_off"]                                   # poor: 10.00 - 12.00 < 0
    assert _state(session, poor).state == "cut"
    levels = {s.account_id: s.level for s in session.scalars(select(AlarmState))}
    assert levels.get(poor.id) == 3 and levels.get(mid.id) == 1 and levels.get(rich.id, 0) == 0
    alarm_keys = [n.key for n in session.scalars(select(Notification).where(Notification.kind == "balance_alarm"))]
    assert any(k.startswith(f"alarm:{poor.id}:") for k in alarm_keys)
    assert any(k.startswith(f"alarm:{mid.id}:1:1:1") for k in alarm_keys)
    assert not any(k.startswith(f"alarm:{rich.id}:") for k in alarm_keys)
    # a desk recharge stays synchronous: supply comes back at once
    cashdesk.desk_recharge(session, poor.id, 5000, key="bulk-topup")
    session.commit()
    assert _kinds(session) == ["relay_off", "relay_on"]

"""Balance alarms: three levels, fired on a downward crossing, repeated `times` times every
`every_minutes`, cleared by a recharge, never sent twice for one crossing."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.alarms import balance as alarms
from core.ledger import cashdesk
from core.models import AlarmState, Notification, Tenant

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Shanghai


@pytest.fixture
def tenant_on_sms(factory, session, sandbox, clock_at):
    clock_at(T0)
    # platform-billed (the wallet is the balance), keep-power on: no automatic cut in these tests
    account = factory.account(balance_fen=6000, billing_mode="prepaid-platform")
    account.keep_power = True
    tenant = session.get(Tenant, account.tenant_id)
    tenant.notify_channels = ["sms"]
    tenant.phone = "13900000001"
    session.commit()
    return account


def _spend(session, account, fen, n):
    cashdesk.consume(session, account.id, fen, key=f"use:{account.id}:{n}")
    session.commit()


def _notices(session):
    session.expire_all()
    return [n.key for n in session.scalars(select(Notification).where(Notification.kind == "balance_alarm")
                                           .order_by(Notification.id))]


def test_an_alarm_sequence_with_counts_and_clearing(session, sandbox, tenant_on_sms, clock_at):
    a = tenant_on_sms
    _spend(session, a, 1500, 1)                           # 60 → 45: level 1 (times 1)
    assert _notices(session) == [f"alarm:{a.id}:1:1:1:sms"]
    _spend(session, a, 500, 2)                            # 40: still level 1, nothing new
    assert len(_notices(session)) == 1
    _spend(session, a, 2500, 3)                           # 15: level 2 (times 2, every 360 min)
    assert _notices(session)[-1] == f"alarm:{a.id}:2:2:1:sms"
    assert alarms.send_due_repeats(T0 + timedelta(minutes=359)) == 0
    assert alarms.send_due_repeats(T0 + timedelta(minutes=360)) == 1
    assert _notices(session)[-1] == f"alarm:{a.id}:2:2:2:sms"
    assert alarms.send_due_repeats(T0 + timedelta(days=2)) == 0   # two notices were all level 2 gets
    cashdesk.desk_recharge(session, a.id, 10000, key="topup-1")   # 115: cleared
    session.commit()
    state = session.scalar(select(AlarmState).where(AlarmState.account_id == a.id))
    assert state.level == 0 and state.cleared_at is not None
    _spend(session, a, 7000, 4)                           # 45 again: a new crossing notifies again
    assert _notices(session)[-1] == f"alarm:{a.id}:3:1:1:sms"
    sms = sandbox.sent("sms")
    assert len(sms) == 4 and all(m["PhoneNumbers"] == "13900000001" for m in sms)
    assert "45.00" in sms[0]["TemplateParam"]


def test_a_balance_that_jumps_two_levels_fires_only_the_deepest(session, sandbox, tenant_on_sms):
    a = tenant_on_sms
    _spend(session, a, 5000, 1)                           # 60 → 10: past 50 and 20 at once
    assert _notices(session) == [f"alarm:{a.id}:1:2:1:sms"]


def test_the_same_event_twice_sends_one_notice(session, sandbox, tenant_on_sms):
    a = tenant_on_sms
    _spend(session, a, 1500, 1)
    alarms.on_balance_changed(a.id)                       # a replayed balance_changed
    alarms.on_balance_changed(a.id)
    assert len(_notices(session)) == 1 and len(sandbox.sent("sms")) == 1


def test_a_partial_recharge_lowers_the_level_without_a_notice_and_stops_repeats(session, sandbox, tenant_on_sms):
    a = tenant_on_sms
    _spend(session, a, 5000, 1)                           # 10: level 2, a repeat is due later
    cashdesk.desk_recharge(session, a.id, 3000, key="partial")  # 40: level 1 range, not a downward crossing
    session.commit()
    state = session.scalar(select(AlarmState).where(AlarmState.account_id == a.id))
    assert state.level == 1 and state.next_notice_at is None
    assert alarms.send_due_repeats(T0 + timedelta(days=1)) == 0
    assert len(_notices(session)) == 1


def test_levels_come_from_the_account_then_the_site(session, sandbox, factory, clock_at):
    clock_at(T0)
    site = factory.site(alarm_levels=[{"amount_fen": 10000, "times": 1, "every_minutes": 0}])
    account = factory.account(site=site, balance_fen=15000, billing_mode="prepaid-platform")
    session.get(Tenant, account.tenant_id).notify_channels = ["sms"]
    session.commit()
    _spend(session, account, 6000, 1)                     # 90 ≤ the site's 100-yuan level
    assert _notices(session) == [f"alarm:{account.id}:1:1:1:sms"]


def test_voice_calls_only_for_the_deepest_level(session, sandbox, tenant_on_sms):
    a = tenant_on_sms
    session.get(Tenant, a.tenant_id).notify_channels = ["sms", "voice"]
    session.commit()
    _spend(session, a, 1500, 1)                           # level 1: SMS only
    assert sandbox.sent("voice") == []
    _spend(session, a, 4600, 2)                           # -1.00: level 3
    calls = sandbox.sent("voice")
    assert len(calls) == 1 and calls[0]["CalledNumber"] == "13900000001"


def test_the_bulk_fast_path_picks_only_accounts_whose_alarm_level_changes(session, sandbox, factory, clock_at,
                                                                         monkeypatch):
    from core import signals
    from core.alarms.balance import needing_evaluation
    clock_at(T0)
    above = factory.account(balance_fen=9000)
    crossed = factory.account(balance_fen=9000)
    postpaid = factory.account(balance_fen=0, billing_mode="postpaid")
    with monkeypatch.context() as m:                        # spent with no listener told yet
        m.setattr(signals, "emit", lambda *a, **k: None)
        _spend(session, crossed, 5000, 1)                   # 90 -> 40: level 1
    assert needing_evaluation(sorted([above.id, crossed.id, postpaid.id])) == [crossed.id]
    alarms.on_balances_changed([{"account_id": a.id} for a in (above, crossed, postpaid)])
    session.expire_all()
    levels = {s.account_id: s.level for s in session.scalars(select(AlarmState))}
    assert levels.get(crossed.id) == 1 and levels.get(above.id, 0) == 0 and levels.get(postpaid.id, 0) == 0
    assert needing_evaluation([crossed.id]) == []            # nothing left to do for it

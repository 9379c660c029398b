"""Prepaid-meter accounts (表端计费): the meter holds the money.

A recharge the meter confirmed moves from the wallet to ``clearing:meter-credit``; the balance
tenants, managers and alarms see is the meter's remaining amount with the time it was read, on
every front. The B501 case of the issue: the wallet said 5.00 (money paid in long ago) with a
level-2 alarm while the meter held 190.11.
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from core import ledger
from core.alarms import balance as alarms
from core.db import session_scope
from core.ledger import cashdesk
from core.ledger import check as ledger_check
from core.models import AlarmState, JournalEntry, LedgerAccount, Meter, MeterCommand, TenantBinding
from core.supply import meter_side
from hardware import poller
from tests.hardware.conftest import _fast_meters, simulator, wired_meter  # noqa: F401 - fixtures used here

READ_AT = datetime(2026, 11, 27, 6, 5, tzinfo=UTC)  # 14:05 in Shanghai


def clearing_balance(session) -> int:
    session.expire_all()
    clearing = session.scalar(select(LedgerAccount.id).where(LedgerAccount.code == "clearing:meter-credit"))
    return 0 if clearing is None else ledger.balance_from_postings(session, clearing)


def left_pending(command_id: int) -> None:
    """The executor's stand-in: the command stays pending."""


def test_a_confirmed_push_moves_wallet_money_to_meter_credit(session, wired_meter):  # noqa: F811
    meter, sim, gw = wired_meter("dlt645-2007", "000000000081", "dlt645", billing_mode="prepaid-meter",
                                 balance_fen=0)
    remaining0 = sim.balance_fen
    cashdesk.desk_recharge(session, meter.account_id, 3000, key="desk:mc:1", actor="test", front="cli")
    session.commit()  # after commit: push -> executor (eager) -> confirmed -> meter credit, one transaction
    cmd = session.scalars(select(MeterCommand).where(MeterCommand.meter_id == meter.id)).one()
    session.refresh(cmd)
    assert cmd.state == "confirmed"
    session.expire_all()
    assert ledger.account_balance(session, meter.account_id) == 0  # the wallet is back where it was
    assert clearing_balance(session) == 3000
    credit = session.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == f"meter-credit:{cmd.id}"))
    assert credit is not None and credit.kind == "meter_credit" and credit.account_id == meter.account_id
    assert ledger_check.validate(session) == []
    # what the tenant has is on the meter, read back with the confirmation
    session.refresh(meter)
    assert meter.remaining_fen is not None and meter.remaining_fen - remaining0 > 2800
    assert meter.remaining_read_at is not None


def test_the_b501_case_shows_the_meters_remaining_with_its_read_time(session, factory, client):
    from admin.monitor_data import site_cells
    from bot import tenant_chat
    from miniapp_api import auth

    site = factory.site()
    account = factory.account(room=factory.room(site, "B501"), billing_mode="prepaid-meter", balance_fen=500)
    meter = session.scalars(select(Meter).where(Meter.account_id == account.id)).one()
    meter.remaining_fen, meter.remaining_read_at = 19011, READ_AT
    session.add(TenantBinding(openid="o-b501", account_id=account.id, tenant_id=account.tenant_id))
    session.commit()

    with session_scope() as s:
        assert alarms.evaluate(s, account.id).level == 0  # before: level 2 on the wallet's 5.00

    cell = next(c for c in site_cells(session, site) if c.number == "B501")
    assert (cell.balance_fen, cell.fee) == (19011, "normal")
    assert cell.read_at == READ_AT and cell.compact()[3:] == [19011, cell.read_label] and cell.read_label

    token = auth.issue_token("o-b501")
    body = client.get(f"/api/v1/accounts/{account.id}/balance", headers={"Authorization": f"Bearer {token}"}).json
    assert body["balance"] == "190.11" and body["balance_fen"] == 19011
    assert body["balance_source"] == "meter" and body["pending_fen"] == 500
    assert datetime.fromisoformat(body["balance_read_at"]) == READ_AT
    brief = client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"}).json["accounts"][0]
    assert brief["balance"] == "190.11" and brief["fee_status"] == "normal" and brief["balance_source"] == "meter"

    reply = tenant_chat.balance(session, "o-b501", [])
    assert "190.11" in reply and "11-27 14:05" in reply and "5.00" in reply  # 5.00 paid in, not yet on the meter


def test_a_poll_that_lowers_the_meters_remaining_raises_the_alarm(session, wired_meter):  # noqa: F811
    meter, sim, gw = wired_meter("dlt645-2007", "000000000082", "dlt645", billing_mode="prepaid-meter",
                                 balance_fen=0)
    sim.balance_fen = 30000
    poller.poll(meter_ids=[meter.id])
    session.expire_all()
    assert (session.scalar(select(AlarmState.level).where(AlarmState.account_id == meter.account_id)) or 0) == 0
    sim.balance_fen = 1500  # the meter deducted as it counted: 15.00 left, below level 2 (20 yuan)
    poller.poll(meter_ids=[meter.id])
    session.expire_all()
    assert session.scalar(select(AlarmState.level).where(AlarmState.account_id == meter.account_id)) >= 1
    m = session.get(Meter, meter.id)
    assert m.remaining_fen is not None and m.remaining_fen <= 1500 and m.remaining_read_at is not None


def test_ledger_check_finds_a_confirmed_push_without_meter_credit(session, factory, monkeypatch):
    monkeypatch.setattr("core.supply.commands.EXECUTOR", f"{__name__}.left_pending")
    account = factory.account(billing_mode="prepaid-meter")
    with session_scope() as s:
        cashdesk.desk_recharge(s, account.id, 2500, key="desk:mc:2")
    cmd = session.scalars(select(MeterCommand).join(Meter, Meter.id == MeterCommand.meter_id)
                          .where(Meter.account_id == account.id)).one()
    assert cmd.idempotency_key.startswith("meter-recharge:")
    # confirmed before meter credit existed (or its credit was lost): forced here
    session.execute(update(MeterCommand).where(MeterCommand.id == cmd.id).values(state="confirmed"))
    session.commit()
    problems = ledger_check.validate(session)
    assert [p.check for p in problems] == ["meter-credit", "meter-credit"]
    assert f"command {cmd.id}" in {p.subject for p in problems}

    assert meter_side.sweep()["credited"] == 1
    session.expire_all()
    assert ledger_check.validate(session) == []
    assert ledger.account_balance(session, account.id) == 0 and clearing_balance(session) == 2500
    assert meter_side.sweep()["credited"] == 0

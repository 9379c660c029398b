"""Meter-side prepaid: money credited to the wallet is pushed to the meter as one recharge command."""
from __future__ import annotations

import requests
from sqlalchemy import select

import core.supply.meter_side  # noqa: F401 - registers the listener (core.signals.load_listeners does in the app)

EXECUTED: list[int] = []


def record_only(command_id: int) -> None:
    EXECUTED.append(command_id)


def commands_of(account_id):
    from core.db import new_session
    from core.models import Meter, MeterCommand
    with new_session() as s:
        return [(c.kind, c.params, c.idempotency_key) for c in s.scalars(
            select(MeterCommand).join(Meter, Meter.id == MeterCommand.meter_id)
            .where(Meter.account_id == account_id).order_by(MeterCommand.id))]


def test_a_paid_recharge_on_a_meter_side_account_queues_one_recharge_command(bound_tenant, pay_env, monkeypatch):
    monkeypatch.setattr("core.supply.commands.EXECUTOR", f"{__name__}.record_only")
    tenant, account = bound_tenant(balance_fen=0, billing_mode="prepaid-meter")
    order = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "50.00", "channel": "wechat"}).json()
    requests.post(order["sandbox_pay_url"], timeout=10).raise_for_status()
    requests.post(order["sandbox_pay_url"], timeout=10).raise_for_status()  # paid twice: one callback credit
    cmds = commands_of(account.id)
    assert len(cmds) == 1
    kind, params, key = cmds[0]
    assert kind == "recharge" and params == {"amount_fen": 5000} and key.startswith("meter-recharge:")


def test_platform_side_accounts_and_deductions_push_nothing_to_the_meter(factory, monkeypatch):
    monkeypatch.setattr("core.supply.commands.EXECUTOR", f"{__name__}.record_only")
    from core.db import session_scope
    from core.ledger import cashdesk
    platform = factory.account(billing_mode="prepaid-platform")
    meter_side = factory.account(billing_mode="prepaid-meter", balance_fen=1000)
    with session_scope() as s:
        cashdesk.desk_recharge(s, platform.id, 1000, key="desk:1")
        cashdesk.consume(s, meter_side.id, 300, key="usage:1")
    assert commands_of(platform.id) == [] and commands_of(meter_side.id) == []
    with session_scope() as s:
        cashdesk.desk_recharge(s, meter_side.id, 700, key="desk:2")
    assert [c[1] for c in commands_of(meter_side.id)] == [{"amount_fen": 700}]


def test_a_paid_recharge_restores_supply_that_ran_out_on_a_platform_billed_account(bound_tenant, pay_env,
                                                                                     monkeypatch):
    import core.supply.auto  # noqa: F401 - the bot/alarms area's listener: cut at zero, restore on recharge
    from core.db import session_scope
    from core.ledger import cashdesk
    monkeypatch.setattr("core.supply.commands.EXECUTOR", f"{__name__}.record_only")
    for name, value in (("METERPAY_FRIENDLY_NIGHTS", "off"), ("METERPAY_FRIENDLY_WEEKENDS", "0"),
                        ("METERPAY_FRIENDLY_HOLIDAYS", "0")):
        monkeypatch.setenv(name, value)  # cut now, whatever the hour of the test run
    tenant, account = bound_tenant(balance_fen=100, billing_mode="prepaid-platform")
    with session_scope() as s:
        cashdesk.consume(s, account.id, 300, key="usage:run-out")
    assert [c[0] for c in commands_of(account.id)] == ["relay_off"]
    order = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "50.00", "channel": "wechat"}).json()
    requests.post(order["sandbox_pay_url"], timeout=10).raise_for_status()
    assert [c[0] for c in commands_of(account.id)] == ["relay_off", "relay_on"]

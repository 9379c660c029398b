"""End to end against the meter simulator over TCP: a prepaid-platform account runs out, the
relay (or valve) really opens on the simulated meter, and a recharge really closes it again."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from core.ledger import cashdesk
from core.models import Meter, MeterCommand
from core.sites.accounts import MeterSpec

WEDNESDAY_NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def in_thread(fn):
    """Run ``fn`` on a fresh thread: the executor (eager here) calls asyncio.run, which refuses to
    run where an event loop is already running (a session-scoped sync Playwright in another
    area's tests keeps one on the main thread for the whole run)."""
    import threading
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            box["error"] = exc
    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _commands(session):
    session.expire_all()
    return [(c.kind, c.state) for c in session.scalars(select(MeterCommand).order_by(MeterCommand.id))]


def test_cut_at_zero_and_restore_on_recharge_against_the_simulator(session, sandbox, factory, sim_gateway,
                                                                    clock_at):
    clock_at(WEDNESDAY_NOON)
    gw = sim_gateway("modbus-rtu", [("acrel-ddsy1352", "7")])
    sim = gw.meter("7")
    account = factory.account(balance_fen=300, meters=(
        MeterSpec(serial="E2E-ACREL-7", profile="acrel-ddsy1352", gateway=gw.url, address="7"),))
    assert sim.relay_on

    def use_it_all():
        cashdesk.consume(session, account.id, 300, key="e2e:use:1")
        session.commit()                    # balance 0 → automatic cut → outbox → executor → meter
    in_thread(use_it_all)
    assert _commands(session) == [("relay_off", "confirmed")]
    assert not sim.relay_on
    meter = session.scalar(select(Meter).where(Meter.account_id == account.id))
    assert meter.relay_state == "off"

    def top_up():
        cashdesk.desk_recharge(session, account.id, 2000, key="e2e:topup")
        session.commit()                    # above the restore line → relay closed again
    in_thread(top_up)
    assert _commands(session) == [("relay_off", "confirmed"), ("relay_on", "confirmed")]
    assert sim.relay_on


def test_a_water_valve_closes_at_zero_and_opens_on_recharge(session, sandbox, factory, sim_gateway, clock_at):
    clock_at(WEDNESDAY_NOON)
    gw = sim_gateway("cjt188", [("cjt188-water", "00000000000088")])
    sim = gw.meter("00000000000088")
    account = factory.account(balance_fen=100, meters=(
        MeterSpec(serial="E2E-WATER-88", kind="water", profile="cjt188-water", gateway=gw.url,
                  address="00000000000088"),))
    def use_it_all():
        cashdesk.consume(session, account.id, 100, key="e2e:water:1", kind="water")
        session.commit()
    in_thread(use_it_all)
    assert _commands(session) == [("valve_close", "confirmed")] and not sim.valve_open
    def top_up():
        cashdesk.desk_recharge(session, account.id, 1000, key="e2e:water:topup")
        session.commit()
    in_thread(top_up)
    assert _commands(session)[-1] == ("valve_open", "confirmed") and sim.valve_open


def test_a_manager_trips_a_room_from_chat_and_the_simulated_relay_opens(client, session, sandbox, factory,
                                                                        sim_gateway, clock_at):
    import re

    from core.sites.managers import create_manager
    from tests.bot.helpers import WeChat
    clock_at(WEDNESDAY_NOON)
    gw = sim_gateway("modbus-rtu", [("acrel-ddsy1352", "9")])
    site = factory.site("E2E site")
    factory.account(room=factory.room(site, "A909"), balance_fen=10000, meters=(
        MeterSpec(serial="E2E-ACREL-9", profile="acrel-ddsy1352", gateway=gw.url, address="9"),))
    create_manager(session, "e2e", "password123", sites=[site.name]).wechat_openid = "o-e2e"
    session.commit()
    wechat = WeChat(client)
    code = re.search(r"确认 (\d{4})", wechat.say("o-e2e", "拉闸 909")).group(1)
    assert "已执行" in in_thread(lambda: wechat.say("o-e2e", f"确认 {code}"))
    assert _commands(session) == [("relay_off", "confirmed")] and not gw.meter("9").relay_on
    assert "继电器 off" in wechat.say("o-e2e", "房间 909")

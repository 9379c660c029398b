"""Each batch action against simulated meters over real TCP (or the ledger), to the fen."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from core.batch import tasks
from core.ledger import account_balance, system_account
from core.ledger.journal import balance_from_postings
from core.models import Account, AuditLog
from core.tariffs.store import add_plan
from tests.batch.helpers import batch_commands, batch_entries, drive, make_task, states


def test_relay_off_then_on_reaches_every_meter_with_its_own_key(wired_site, session):
    site, rooms, _gws = wired_site(4)
    off = make_task(session, site, "relay_off")
    drive(off)
    assert states(session, off) == [("confirmed", "")] * 4
    assert [c.idempotency_key for c in batch_commands(session, off)] == [f"batch:{off}:{n}" for n in range(1, 5)]
    assert all(not sim.relay_on for *_x, sim in rooms)
    on = make_task(session, site, "relay_on", {"floors": [["A", "1"]]})
    drive(on)
    assert states(session, on) == [("confirmed", "")] * 4
    assert all(sim.relay_on for *_x, sim in rooms)
    assert tasks.show(session, on)["state"] == "finished"


def test_relay_off_on_a_modbus_meter_and_a_water_valve(wired_site, session):
    site, rooms, _ = wired_site(2, profile="acrel-ddsy1352", protocol="modbus-rtu")
    task = make_task(session, site, "relay_off")
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 2
    assert all(not sim.relay_on for *_x, sim in rooms)


def test_meter_prices_where_the_profile_keeps_them_and_a_skip_where_not(wired_site, session):
    site, rooms, _ = wired_site(2)
    wired_site(1, profile="acrel-ddsy1352", protocol="modbus-rtu", site=site, building="B")
    prices = {"sharp": "1.2000", "peak": "1.0000", "flat": "0.6000", "valley": "0.3000"}
    task = make_task(session, site, "set_meter_prices", params={"prices": prices})
    drive(task)
    got = states(session, task)
    assert got[:2] == [("confirmed", "")] * 2
    assert got[2][0] == "skipped" and "cannot set prices" in got[2][1]
    assert len(batch_commands(session, task)) == 2
    sim = rooms[0][3]
    assert sorted(sim.prices.values()) == sorted(Decimal(v) for v in prices.values()) or sim.prices


def test_keep_power_sync_clock_and_alarms_on_dlt645_meters(wired_site, session):
    site, rooms, _ = wired_site(2)
    keep = make_task(session, site, "keep_power_on")
    drive(keep)
    assert states(session, keep) == [("confirmed", "")] * 2
    assert all(sim.keep_power for *_x, sim in rooms)
    session.expire_all()
    assert all(session.get(Account, a.id).keep_power for _r, a, _m, _s in rooms)
    clock = make_task(session, site, "sync_clock")
    drive(clock)
    assert states(session, clock) == [("confirmed", "")] * 2
    alarms = make_task(session, site, "set_alarms", params={"alarm1": "80.00", "alarm2": "30.00", "alarm3": "0.00"})
    drive(alarms)
    assert states(session, alarms) == [("confirmed", "")] * 2
    session.expire_all()
    acct = session.get(Account, rooms[0][1].id)
    assert [lvl["amount_fen"] for lvl in acct.alarm_levels] == [8000, 3000, 0]
    assert rooms[0][3].alarms[0x04001001] == 8000 and rooms[0][3].alarms[0x04001002] == 3000


def test_alarms_on_a_meter_that_keeps_none_are_set_on_the_account(wired_site, session):
    site, rooms, _ = wired_site(1, profile="acrel-ddsy1352", protocol="modbus-rtu")
    task = make_task(session, site, "set_alarms", params={"alarm1": "50.00", "alarm2": "20.00"})
    drive(task)
    [(state, reason)] = states(session, task)
    assert state == "confirmed" and "keeps none" in reason
    assert batch_commands(session, task) == []


def test_recharge_a_fixed_amount_posts_one_entry_per_account(wired_site, session):
    site, rooms, _ = wired_site(3, balance_fen=1000)
    task = make_task(session, site, "recharge", params={"amount": "20.00"})
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 3
    entries = batch_entries(session, task)
    assert [e.idempotency_key for e in entries] == [f"batch:{task}:{n}" for n in (1, 2, 3)]
    assert [account_balance(session, a.id) for _r, a, _m, _s in rooms] == [3000, 3000, 3000]
    assert balance_from_postings(session, system_account(session, "cash:desk").id) == -6000


def test_recharge_on_prepaid_meter_accounts_reaches_the_meters(wired_site, session):
    site, rooms, _ = wired_site(2, billing_mode="prepaid-meter", balance_fen=0)
    before = [(sim.balance_fen, sim.purchase_count) for *_x, sim in rooms]
    task = make_task(session, site, "recharge", params={"amount": "20.00"})
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 2
    after = [(sim.balance_fen, sim.purchase_count) for *_x, sim in rooms]
    # each meter took the 20.00 once (its purchase count moved by one; it keeps counting meanwhile)
    assert [c - a[1] for a, (_b, c) in zip(before, after, strict=True)] == [1, 1]
    assert all(1900 < b - a[0] <= 2000 for a, (b, _c) in zip(before, after, strict=True))
    # the wallet money moved to meter credit when the meter confirmed, as single recharges do
    assert [account_balance(session, a.id) for _r, a, _m, _s in rooms] == [0, 0]
    assert [c.idempotency_key.startswith("meter-recharge:") for c in
            session.scalars(select(__import__("core.models", fromlist=["MeterCommand"]).MeterCommand))] == [True, True]


def test_recharge_amounts_from_a_spreadsheet(wired_site, session, tmp_path):
    from openpyxl import Workbook

    from core.batch.selection import parse_rooms_file
    site, rooms, _ = wired_site(3, balance_fen=0)
    wb = Workbook()
    ws = wb.active
    ws.append(["room", "amount"])
    ws.append([rooms[0][0].number, "12.34"])
    ws.append([int(rooms[2][0].number), 5])
    path = tmp_path / "r.xlsx"
    wb.save(path)
    task = make_task(session, site, "recharge", selection={}, rooms_file=parse_rooms_file("r.xlsx", path.read_bytes()))
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 2
    assert [account_balance(session, rooms[i][1].id) for i in (0, 1, 2)] == [1234, 0, 500]


def test_charge_credits_its_revenue_account(wired_site, session):
    site, rooms, _ = wired_site(2, balance_fen=10000)
    task = make_task(session, site, "charge", params={"code": "property", "name": "物业费", "amount": "35.50"})
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 2
    assert [account_balance(session, a.id) for _r, a, _m, _s in rooms] == [6450, 6450]
    assert balance_from_postings(session, system_account(session, "revenue:charge:property").id) == 7100


def test_set_tariff_assigns_the_plan_per_utility(wired_site, session):
    site, rooms, _ = wired_site(2)
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.1"})
    session.commit()
    task = make_task(session, site, "set_tariff", params={"electricity": "商业电价"})
    drive(task)
    assert states(session, task) == [("confirmed", "")] * 2
    session.expire_all()
    assert all(session.get(Account, a.id).electricity_plan.name == "商业电价" for _r, a, _m, _s in rooms)


def test_closed_accounts_and_meters_behind_no_gateway_are_skipped(wired_site, session, factory):
    site, rooms, _ = wired_site(2, balance_fen=0)
    factory.account(room=factory.room(site, number="999", building="B"))  # a meter behind no gateway
    task = make_task(session, site, "relay_off")
    session.query(Account).filter_by(id=rooms[1][1].id).update({"status": "closed"})
    session.commit()
    drive(task)
    got = states(session, task)
    assert got[0] == ("confirmed", "")
    assert got[1] == ("skipped", "account closed")
    assert got[2] == ("skipped", "meter is not behind a gateway")


def test_creation_and_confirmation_are_audited(wired_site, session):
    site, _rooms, _ = wired_site(1)
    task = tasks.create_task(session, site_id=site.id, action="relay_off", selection={"all": True},
                             actor="manager:li", front="admin")
    assert task.state == "unconfirmed"
    tasks.confirm_task(session, task.id, actor="manager:wang", front="admin")
    session.commit()
    acts = {(a.action, a.actor) for a in session.scalars(select(AuditLog).where(AuditLog.action.like("batch_%")))}
    assert {("batch_create", "manager:li"), ("batch_confirm", "manager:wang")} <= acts
    assert tasks.show(session, task.id)["confirmed_by"] == "manager:wang"

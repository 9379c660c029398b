"""Room detail and its remote actions: each calls the core service, asks before moving money or
cutting supply, acts once per form, refuses bad input without changing anything, and is audited."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.models import AuditLog, JournalEntry, LedgerAccount, MeterCommand
from tests.admin.conftest import op_of, room_at


@pytest.fixture
def shop(factory, session):
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=10000, tenant="王记")
    return site, account


def balance(session, account_id):
    session.expire_all()
    return session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.account_id == account_id))


def entries(session):
    return session.scalar(select(func.count()).select_from(JournalEntry))


def test_the_room_page_shows_tenant_balance_meters_entries_and_actions(manage, shop):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "A101" in html and "王记" in html and "100.00" in html
    assert account.meters[0].serial in html
    assert "开户余额" in html  # the opening balance entry
    assert "您只有查看权限" not in html
    for label in ("充值", "退款", "拉闸", "合闸", "保电", "报警金额", "更改电价"):
        assert label in html


def test_a_recharge_is_confirmed_before_money_moves(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    before = entries(session)
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/recharge", {"amount": "50", "op": "a" * 32})
    assert resp.status_code == 200
    assert "确认给 A101 充值 ¥50" in resp.text and 'name="confirm" value="yes"' in resp.text
    assert entries(session) == before and balance(session, account.id) == 10000


def test_a_confirmed_recharge_moves_money_once_even_when_submitted_twice(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    op = op_of(manage.client.get(f"/admin/rooms/{account.room_id}").text)
    url = f"/admin/rooms/{account.room_id}/actions/recharge"
    first = manage.post(url, {"amount": "50.00", "op": op, "confirm": "yes"})
    assert first.status_code == 303
    manage.post(url, {"amount": "50.00", "op": op, "confirm": "yes"})
    assert balance(session, account.id) == 15000
    page = manage.client.get(first.location).text
    assert "已充值 ¥50.00" in page
    row = session.scalar(select(AuditLog).where(AuditLog.action == "recharge"))
    assert row.actor == "manager:alice" and row.front == "admin" and row.detail["amount"] == "50.00"


@pytest.mark.parametrize("amount", ["", "abc", "-5", "0", "1.005", "99999999"])
def test_a_bad_recharge_amount_is_refused_and_changes_nothing(manage, shop, session, amount):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    before = entries(session)
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/recharge",
                       {"amount": amount, "op": "b" * 32, "confirm": "yes"})
    assert resp.status_code == 400
    assert 'class="flash err"' in resp.text
    assert entries(session) == before and balance(session, account.id) == 10000


def test_a_refund_never_takes_more_than_the_balance(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    url = f"/admin/rooms/{account.room_id}/actions/refund"
    resp = manage.post(url, {"amount": "150", "op": "c" * 32, "confirm": "yes"})
    assert resp.status_code == 409
    assert balance(session, account.id) == 10000
    assert manage.post(url, {"amount": "30", "op": "d" * 32, "confirm": "yes"}).status_code == 303
    assert balance(session, account.id) == 7000


def test_cutting_supply_is_confirmed_then_sends_relay_off_to_every_meter(manage, shop, session, outbox_held):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    url = f"/admin/rooms/{account.room_id}/actions/trip"
    asked = manage.post(url, {"op": "e" * 32})
    assert "确认对 A101 拉闸" in asked.text
    assert session.scalar(select(func.count()).select_from(MeterCommand)) == 0
    done = manage.post(url, {"op": "e" * 32, "confirm": "yes"})
    assert done.status_code == 303
    cmd = session.scalar(select(MeterCommand))
    assert (cmd.kind, cmd.state, cmd.front, cmd.requested_by) == ("relay_off", "pending", "admin", "manager:alice")
    assert session.scalar(select(AuditLog).where(AuditLog.action == "trip")).actor == "manager:alice"
    page = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert 'data-state="pending"' in page and "拉闸" in page and 'data-open="1"' in page
    follow = manage.client.get(f"/admin/rooms/{account.room_id}/commands.json").get_json()
    assert follow["open"] == 1 and follow["commands"][0]["kind"] == "relay_off"


def test_restoring_supply_needs_no_confirmation(manage, shop, session, outbox_held):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/restore", {"op": "f" * 32})
    assert resp.status_code == 303
    assert session.scalar(select(MeterCommand)).kind == "relay_on"


def test_one_meter_can_be_switched_but_only_a_meter_of_this_room(manage, shop, factory, session, outbox_held):
    site, account = shop
    other = factory.account(room=room_at(factory, site, "A102"))
    manage.as_manager("alice", sites=[site])
    url = f"/admin/rooms/{account.room_id}/actions/switch"
    resp = manage.post(url, {"meter_id": str(other.meters[0].id), "on": "1", "op": "1" * 32})
    assert resp.status_code == 404
    assert manage.post(url, {"meter_id": str(account.meters[0].id), "on": "0", "op": "2" * 32}).status_code == 200
    assert session.scalar(select(func.count()).select_from(MeterCommand)) == 0  # asked first
    resp = manage.post(url, {"meter_id": str(account.meters[0].id), "on": "0", "op": "2" * 32, "confirm": "yes"})
    assert resp.status_code == 303
    assert session.scalar(select(MeterCommand)).kind == "relay_off"


def test_keep_power_alarm_amounts_and_tariff_are_set_from_the_page(manage, shop, session):
    site, account = shop
    from core.tariffs.store import add_plan
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.2"})
    session.commit()
    manage.as_manager("alice", sites=[site])
    base = f"/admin/rooms/{account.room_id}/actions"
    assert manage.post(f"{base}/keep_power", {"on": "1"}).status_code == 303
    assert manage.post(f"{base}/alarms", {"level1": "80", "level2": "30", "level3": "5"}).status_code == 303
    assert manage.post(f"{base}/tariff", {"tariff": "商业电价"}).status_code == 303
    session.expire_all()
    from core.models import Account
    acct = session.get(Account, account.id)
    assert acct.keep_power is True
    assert [lv["amount_fen"] for lv in acct.alarm_levels] == [8000, 3000, 500]
    assert acct.electricity_plan.name == "商业电价"
    actions = set(session.scalars(select(AuditLog.action).where(AuditLog.front == "admin")))
    assert {"keep_power_on", "set_alarm_levels", "change_tariff"} <= actions
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "保电" in html and 'class="badge f-keep_power"' in html


def test_alarm_amounts_that_do_not_go_down_are_refused(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/alarms",
                       {"level1": "10", "level2": "30", "level3": "5"})
    assert resp.status_code == 400
    session.expire_all()
    from core.models import Account
    assert session.get(Account, account.id).alarm_levels is None


def test_an_unknown_tariff_is_refused(manage, shop):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/tariff", {"tariff": "nope"})
    assert resp.status_code == 404


def test_a_manager_of_site_a_gets_404_on_site_b_rooms_and_their_actions(manage, shop, factory, session):
    site_b, account_b = shop
    site_a = factory.site("西城公寓")
    manage.as_manager("bob", sites=[site_a])
    assert manage.client.get(f"/admin/rooms/{account_b.room_id}").status_code == 404
    assert manage.client.get(f"/admin/rooms/{account_b.room_id}/usage.json").status_code == 404
    resp = manage.post(f"/admin/rooms/{account_b.room_id}/actions/recharge",
                       {"amount": "50", "op": "3" * 32, "confirm": "yes"})
    assert resp.status_code == 404
    assert balance(session, account_b.id) == 10000


def test_a_viewer_sees_the_room_but_cannot_act(manage, shop, session):
    site, account = shop
    manage.as_manager("vera", sites=[site], role="viewer")
    assert manage.client.get(f"/admin/rooms/{account.room_id}").status_code == 200
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/recharge",
                       {"amount": "50", "op": "4" * 32, "confirm": "yes"})
    assert resp.status_code == 403
    assert balance(session, account.id) == 10000


def test_an_action_without_the_csrf_token_is_refused(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    resp = manage.client.post(f"/admin/rooms/{account.room_id}/actions/recharge",
                              data={"amount": "50", "op": "5" * 32, "confirm": "yes"})
    assert resp.status_code == 400
    assert balance(session, account.id) == 10000


def test_a_vacant_room_offers_opening_an_account(manage, factory):
    site = factory.site("东方广场")
    room = room_at(factory, site, "A109")
    factory.session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{room.id}").text
    assert "空置" in html and f"/admin/sites/{site.id}/accounts/new?room={room.id}" in html


def test_the_usage_chart_has_thirty_days_of_daily_usage_from_readings(manage, shop, session):
    from datetime import timedelta
    from decimal import Decimal

    from core.models import Reading
    from core.utils import utcnow
    site, account = shop
    meter = account.meters[0]
    now = utcnow()
    for days_ago, total in [(3, "100.00"), (2, "112.50"), (1, "120.00"), (0, "121.25")]:
        session.add(Reading(meter_id=meter.id, taken_at=now - timedelta(days=days_ago), total=Decimal(total)))
    session.commit()
    manage.as_manager("alice", sites=[site])
    data = manage.client.get(f"/admin/rooms/{account.room_id}/usage.json").get_json()
    assert len(data["days"]) == 30
    series = data["series"][0]
    assert series["name"] == meter.serial and series["unit"] == "kWh"
    assert series["data"][-3:] == [12.5, 7.5, 1.25]
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "121.250" in html or "121.25" in html


def test_a_new_meters_first_day_counts_from_its_first_reading(manage, shop, session):
    from datetime import timedelta
    from decimal import Decimal

    from core.models import Reading
    from core.utils import utcnow
    site, account = shop
    meter = account.meters[0]
    now = utcnow()
    for minutes_ago, total in [(30, "989.94"), (0, "990.20")]:
        session.add(Reading(meter_id=meter.id, taken_at=now - timedelta(minutes=minutes_ago), total=Decimal(total)))
    session.commit()
    manage.as_manager("alice", sites=[site])
    data = manage.client.get(f"/admin/rooms/{account.room_id}/usage.json").get_json()
    today = data["series"][0]["data"][-1]
    assert today == pytest.approx(0.26)
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "990.20 kWh" in html


def test_a_viewer_sees_the_action_buttons_disabled(manage, shop):
    site, account = shop
    manage.as_manager("vera", sites=[site], role="viewer")
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "您只有查看权限" in html and "disabled" in html


def test_todays_usage_and_cost_come_from_billing_the_meters_readings(manage, factory, session, outbox_held):
    from datetime import timedelta
    from decimal import Decimal

    from core.billing import ingest
    from core.tariffs.store import add_plan
    from core.utils import utcnow
    site = factory.site("东方广场")
    add_plan(session, "一元电", {"kind": "flat", "unit": "kWh", "price": "1.00"})
    session.commit()
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=10000, tariff="一元电")
    meter = account.meters[0]
    from admin.room_data import local_midnight
    now = utcnow()
    earlier = max(local_midnight(site), now - timedelta(minutes=20))  # both readings today, site time
    ingest(session, meter.id, earlier, Decimal("500.00"))
    ingest(session, meter.id, now, Decimal("512.34"))
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "¥12.34" in html          # cost today: 12.34 kWh at 1 yuan
    assert "<td>12.34</td>" in html  # usage today on the meter's row
    assert "87.66" in html           # the balance after billing


def test_an_adjustment_needs_a_reason_and_a_confirmation(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    url = f"/admin/rooms/{account.room_id}/actions/adjust"
    assert "确认给 A101 调账 ¥-12.5" in manage.post(url, {"amount": "-12.5", "reason": "抄表错误", "op": "6" * 32}).text
    assert manage.post(url, {"amount": "-12.5", "reason": "", "op": "6" * 32, "confirm": "yes"}).status_code == 400
    assert balance(session, account.id) == 10000
    assert manage.post(url, {"amount": "-12.5", "reason": "抄表错误", "op": "6" * 32,
                             "confirm": "yes"}).status_code == 303
    assert balance(session, account.id) == 8750


def test_closing_an_account_settles_the_balance_and_frees_the_room(manage, shop, session):
    site, account = shop
    manage.as_manager("alice", sites=[site])
    url = f"/admin/rooms/{account.room_id}/actions/close"
    assert "销户" in manage.post(url, {"settlement": "refund"}).text
    session.expire_all()
    from core.models import Account
    assert session.get(Account, account.id).status == "open"
    assert manage.post(url, {"settlement": "refund", "confirm": "yes"}).status_code == 303
    session.expire_all()
    assert session.get(Account, account.id).status == "closed" and balance(session, account.id) == 0
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "空置房间" in html
    assert manage.post(url, {"settlement": "refund", "confirm": "yes"}).status_code == 400  # nothing left to close


def test_a_water_meter_is_closed_and_opened_by_its_valve(manage, factory, session, outbox_held):
    from core.sites.accounts import MeterSpec
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000, meters=(
        MeterSpec(serial="W-1", kind="water", profile="cjt188-water", address="00000000000001"),))
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "关阀" in html and "开阀" in html
    meter_id = str(account.meters[0].id)
    url = f"/admin/rooms/{account.room_id}/actions/switch"
    assert manage.post(url, {"meter_id": meter_id, "on": "0", "op": "7" * 32, "confirm": "yes"}).status_code == 303
    assert manage.post(url, {"meter_id": meter_id, "on": "1", "op": "8" * 32}).status_code == 303
    kinds = [c.kind for c in session.scalars(select(MeterCommand).order_by(MeterCommand.id))]
    assert kinds == ["valve_close", "valve_open"]


def test_room_page_shows_each_utilitys_plan_and_price(manage, factory, session):
    from core.models import Account
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    site = factory.site("东方广场")
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site.id)
    add_plan(session, "商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"}, site_id=site.id)
    account = factory.account(room=room_at(factory, site, "A101"), tariff="商业电价",
                              meters=(MeterSpec("E1"), MeterSpec("W1", kind="water", profile="cjt188-water")))
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "商业电价 <small class=\"muted\">1.0 元/kWh</small>" in html
    assert 'id="plan-water"><span class="neg">未设置' in html
    assert "更改电价" in html and "更改水价" in html
    base = f"/admin/rooms/{account.room_id}/actions"
    resp = manage.post(f"{base}/tariff", {"tariff": "商业电价", "utility": "water"})
    assert resp.status_code == 400 and "priced in kWh; a water meter needs m3" in resp.text
    session.expire_all()
    assert session.get(Account, account.id).water_plan_id is None
    assert manage.post(f"{base}/tariff", {"tariff": "商业水价", "utility": "water"}).status_code == 303
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "水价已改为 商业水价" in html and "商业水价 <small class=\"muted\">5.0 元/m³</small>" in html


def test_closing_from_the_page_bills_the_entered_closing_reading(manage, factory, session):
    from datetime import timedelta

    from core.billing import ingest
    from core.models import Account, BilledUsage
    from core.tariffs.store import add_plan
    from core.utils import utcnow
    site = factory.site("东方广场")
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site.id)
    account = factory.account(room=room_at(factory, site, "A101"), tariff="商业电价", balance_fen=10000)
    serial = account.meters[0].serial
    ingest(session, account.meters[0].id, utcnow() - timedelta(hours=3), 100)
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert f'name="closing_{serial}"' in html and 'placeholder="100.00 @' in html
    url = f"/admin/rooms/{account.room_id}/actions/close"
    resp = manage.post(url, {"settlement": "refund", "confirm": "yes"})
    assert resp.status_code == 400 and "enter its closing reading" in resp.text
    resp = manage.post(url, {"settlement": "refund", "confirm": "yes", f"closing_{serial}": "112.5"})
    assert resp.status_code == 303
    session.expire_all()
    assert session.get(Account, account.id).status == "closed"
    last = session.scalars(select(BilledUsage).order_by(BilledUsage.id.desc())).first()
    assert (last.account_id, last.amount_fen) == (account.id, 1250)

"""Tenant chat: binding by the room's QR scene, balance, usage, recharge link, bills, alert channels."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from bot import binding
from core.models import Reading, Tenant, TenantBinding
from tests.bot.helpers import WeChat


def _bound(client, factory, session, openid="o-tenant-1", number="A301", balance_fen=12345):
    site = factory.site()
    account = factory.account(room=factory.room(site, number), balance_fen=balance_fen, phone="13812345678")
    wechat = WeChat(client)
    asked = wechat.event(openid, "subscribe", "qrscene_" + binding.scene_for(account.room_id))
    assert f"正在绑定房间 {number}" in asked and "后四位" in asked
    reply = wechat.say(openid, "5678")
    return wechat, account, reply


def test_scanning_the_room_qr_and_the_phone_digits_bind_and_show_the_balance(client, sandbox, factory, session):
    wechat, account, reply = _bound(client, factory, session)
    assert "已绑定房间 A301" in reply and "123.45" in reply
    session.expire_all()
    assert session.get(Tenant, account.tenant_id).wechat_openid == "o-tenant-1"
    assert session.scalar(select(TenantBinding).where(TenantBinding.openid == "o-tenant-1")).account_id == account.id
    assert "123.45" in wechat.say("o-tenant-1", "余额")


def test_wrong_phone_digits_bind_nothing(client, sandbox, factory, session):
    account = factory.account(room=factory.room(number="W101"), balance_fen=500, phone="13812345678")
    wechat = WeChat(client)
    wechat.event("o-guess", "subscribe", "qrscene_" + binding.scene_for(account.room_id))
    assert "未成功" in wechat.say("o-guess", "1111")
    assert "没有绑定" in wechat.say("o-guess", "余额")
    assert session.scalars(select(TenantBinding)).all() == []


def test_a_forged_room_scene_binds_nothing(client, sandbox, factory, session):
    account = factory.account(balance_fen=500)
    reply = WeChat(client).event("o-intruder", "subscribe", f"qrscene_room:{account.room_id}:000000000000")
    assert "欢迎" in reply
    assert "没有绑定" in WeChat(client).say("o-intruder", "余额")


def test_an_already_subscribed_user_binds_by_scan_event(client, sandbox, factory, session):
    account = factory.account(room=factory.room(number="B202"), balance_fen=800, phone="13900001234")
    wechat = WeChat(client)
    assert "B202" in wechat.event("o-scan", "SCAN", binding.scene_for(account.room_id))
    reply = wechat.say("o-scan", "1234")
    assert "B202" in reply and "8.00" in reply


def test_unbound_users_are_told_how_to_bind(client, sandbox):
    assert "二维码" in WeChat(client).say("o-nobody", "balance")


def test_menu_clicks_answer_like_the_words(client, sandbox, factory, session):
    wechat, _, _ = _bound(client, factory, session, openid="o-click")
    assert "123.45" in wechat.event("o-click", "CLICK", "BALANCE")


def test_usage_today_and_this_month(client, sandbox, factory, session, clock_at):
    wechat, account, _ = _bound(client, factory, session, openid="o-usage")
    now = clock_at(datetime(2026, 11, 27, 6, 0, tzinfo=UTC))  # 14:00 in Shanghai
    meter = account.meters[0]
    for when, total in ((datetime(2026, 10, 31, 15, 0, tzinfo=UTC), "100.00"),   # before Nov 1 local
                        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), "180.50"),   # 23:00 Nov 26 local
                        (now - timedelta(hours=1), "185.75")):
        session.add(Reading(meter_id=meter.id, taken_at=when, total=Decimal(total)))
    session.commit()
    reply = wechat.say("o-usage", "用电")
    assert "今日 5.25 kWh" in reply and "本月 85.75 kWh" in reply


def test_recharge_links_to_the_mini_program(client, sandbox, factory, session):
    wechat, account, _ = _bound(client, factory, session, openid="o-pay")
    reply = wechat.say("o-pay", "充值")
    assert 'data-miniprogram-appid="wxminiapp000001"' in reply
    assert f"account={account.id}" in reply


def test_bills_list_the_latest_wallet_entries(client, sandbox, factory, session):
    from core.ledger import cashdesk
    wechat, account, _ = _bound(client, factory, session, openid="o-bills")
    cashdesk.desk_recharge(session, account.id, 5000, key="bills-1")
    session.commit()
    reply = wechat.say("o-bills", "账单")
    assert "充值 +50.00" in reply and "开户 +123.45" in reply


def test_tenants_choose_their_alert_channels(client, sandbox, factory, session):
    wechat, account, _ = _bound(client, factory, session, openid="o-prefs")
    assert "短信" not in wechat.say("o-prefs", "通知 短信 关").split("。")[0]
    reply = wechat.say("o-prefs", "通知 邮件 me@example.com")
    session.expire_all()
    tenant = session.get(Tenant, account.tenant_id)
    assert tenant.email == "me@example.com" and "email" in tenant.notify_channels and "sms" not in tenant.notify_channels
    assert "邮件" in reply


def test_a_bad_email_address_changes_nothing(client, sandbox, factory, session):
    wechat, account, _ = _bound(client, factory, session, openid="o-bad-mail")
    before = list(session.get(Tenant, account.tenant_id).notify_channels or [])
    wechat.say("o-bad-mail", "通知 邮件 开")  # no address yet
    session.expire_all()
    assert list(session.get(Tenant, account.tenant_id).notify_channels or []) == before


def test_usage_names_each_utilitys_plan_and_price(client, sandbox, factory, session):
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    site = factory.site()
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site.id)
    add_plan(session, "商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"}, site_id=site.id)
    account = factory.account(room=factory.room(site, "A302"), phone="13812345678", tariff="商业水价",
                              meters=(MeterSpec("E-BOT"), MeterSpec("W-BOT", kind="water", profile="cjt188-water")))
    wechat = WeChat(client)
    wechat.event("o-water", "subscribe", "qrscene_" + binding.scene_for(account.room_id))
    wechat.say("o-water", "5678")
    water = wechat.say("o-water", "用水")
    assert "W-BOT" in water and "水价：商业水价 5.0 元/m³" in water and "E-BOT" not in water
    assert "未设置价格" in wechat.say("o-water", "用电")  # no electricity plan: said, not guessed

"""Manager chat commands: scoped to the manager's sites, confirmed before money or supply moves,
audited with the manager, calling the same core services as the admin pages."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from core import clock, ledger
from core.models import Account, AuditLog, MeterCommand
from core.sites.managers import create_manager
from tests.bot.helpers import WeChat


def room(factory, session, site, number, **kw):
    session.expire(site, ["buildings"])  # the factory reads site.buildings, cached from the last room
    return factory.room(site, number, **kw)


@pytest.fixture
def two_sites(factory, session):
    """Site A with rooms A301 and A302, site B with B301; alice manages A only, bob B only."""
    a, b = factory.site("Site A"), factory.site("Site B")
    acct_a = factory.account(room=room(factory, session, a, "A301"), balance_fen=10000, tenant="Zhang")
    acct_a2 = factory.account(room=room(factory, session, a, "A302"), balance_fen=500, tenant="Li")
    acct_b = factory.account(room=room(factory, session, b, "B301"), balance_fen=20000, tenant="Wang")
    alice = create_manager(session, "alice", "password123", sites=["Site A"])
    alice.wechat_openid = "o-alice"
    bob = create_manager(session, "bob", "password123", sites=["Site B"])
    bob.wechat_openid = "o-bob"
    viewer = create_manager(session, "vera", "password123", sites=["Site A"], role="viewer")
    viewer.wechat_openid = "o-vera"
    session.commit()
    return {"a": acct_a, "a2": acct_a2, "b": acct_b}


def _code(reply: str) -> str:
    match = re.search(r"确认 (\d{4})", reply)
    assert match, reply
    return match.group(1)


def test_room_status_finds_301_when_it_is_unique_in_my_sites(client, sandbox, two_sites):
    reply = WeChat(client).say("o-bob", "房间 301")
    assert "B301" in reply and "200.00" in reply and "Site B" in reply


def test_an_ambiguous_room_number_gets_a_question(client, sandbox, factory, session, two_sites):
    from core.models import Site
    site_a = session.scalar(select(Site).where(Site.name == "Site A"))
    factory.account(room=room(factory, session, site_a, "C301", building="C"), balance_fen=100)
    reply = WeChat(client).say("o-alice", "status 301")
    assert "ambiguous" in reply and "A301" in reply and "C301" in reply


def test_a_manager_of_site_a_cannot_touch_site_b(client, sandbox, session, two_sites):
    wechat = WeChat(client)
    b = two_sites["b"]
    for text in ("房间 B301", "拉闸 B301", "充值 B301 100", "退费 B301 50", "保电 B301 开", "合闸 B301"):
        reply = wechat.say("o-alice", text)
        assert "未执行" in reply and "no room B301" in reply, (text, reply)
    session.expire_all()
    assert ledger.account_balance(session, b.id) == 20000
    assert session.scalars(select(MeterCommand)).all() == []
    assert session.get(Account, b.id).keep_power is False


def test_recharge_asks_for_a_code_then_moves_money_once(client, sandbox, session, two_sites):
    wechat, a = WeChat(client), two_sites["a"]
    ask = wechat.say("o-alice", "充值 301 100")
    assert "请确认" in ask and "100.00" in ask
    session.expire_all()
    assert ledger.account_balance(session, a.id) == 10000  # nothing moved before the code
    code = _code(ask)
    done = wechat.say("o-alice", f"确认 {code}")
    assert "已执行" in done and "200.00" in done
    again = wechat.say("o-alice", f"确认 {code}")
    assert "未执行" in again
    session.expire_all()
    assert ledger.account_balance(session, a.id) == 20000
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "recharge"))
    assert entry.actor == "manager:alice" and entry.front == "bot"


def test_a_wrong_code_changes_nothing(client, sandbox, session, two_sites):
    wechat = WeChat(client)
    code = _code(wechat.say("o-alice", "退费 A301 50"))
    wrong = f"{(int(code) + 1) % 10000:04d}"
    assert "确认码不对" in wechat.say("o-alice", f"确认 {wrong}")
    session.expire_all()
    assert ledger.account_balance(session, two_sites["a"].id) == 10000
    assert "已执行" in wechat.say("o-alice", f"确认 {code}")
    session.expire_all()
    assert ledger.account_balance(session, two_sites["a"].id) == 5000


def test_an_expired_code_does_nothing(client, sandbox, session, two_sites, clock_at):
    wechat = WeChat(client)
    start = clock_at(clock.now())
    code = _code(wechat.say("o-alice", "拉闸 A301"))
    clock_at(start + timedelta(minutes=6))
    assert "过期" in wechat.say("o-alice", f"确认 {code}")
    session.expire_all()
    assert session.scalars(select(MeterCommand)).all() == []


def test_a_refund_above_the_balance_is_refused_and_changes_nothing(client, sandbox, session, two_sites):
    wechat = WeChat(client)
    code = _code(wechat.say("o-alice", "退费 A302 50"))
    reply = wechat.say("o-alice", f"确认 {code}")
    assert "未执行" in reply
    session.expire_all()
    assert ledger.account_balance(session, two_sites["a2"].id) == 500


def test_bad_amounts_are_refused_before_any_code(client, sandbox, two_sites):
    wechat = WeChat(client)
    for text in ("充值 A301 abc", "充值 A301 -5", "充值 A301 0", "充值 A301 1.005"):
        reply = wechat.say("o-alice", text)
        assert "未执行" in reply and "确认" not in reply.replace("未执行", ""), (text, reply)


def test_trip_and_restore_go_through_the_outbox(client, sandbox, session, two_sites):
    wechat = WeChat(client)
    wechat.say("o-alice", "确认 " + _code(wechat.say("o-alice", "拉闸 A301")))
    wechat.say("o-alice", "confirm " + _code(wechat.say("o-alice", "restore A301")))
    session.expire_all()
    kinds = [c.kind for c in session.scalars(select(MeterCommand).order_by(MeterCommand.id))]
    assert kinds == ["relay_off", "relay_on"]
    actions = {r.action: r.actor for r in session.scalars(select(AuditLog))}
    assert actions["trip"] == "manager:alice" and actions["restore"] == "manager:alice"
    assert actions["chat:trip"] == "manager:alice" and actions["chat:confirm"] == "manager:alice"


def test_keep_power_on_and_off(client, sandbox, session, two_sites):
    wechat, a = WeChat(client), two_sites["a"]
    wechat.say("o-alice", "确认 " + _code(wechat.say("o-alice", "保电 A301 开")))
    session.expire_all()
    assert session.get(Account, a.id).keep_power is True
    wechat.say("o-alice", "确认 " + _code(wechat.say("o-alice", "keep A301 off")))
    session.expire_all()
    assert session.get(Account, a.id).keep_power is False


def test_a_viewer_cannot_move_money(client, sandbox, session, two_sites):
    reply = WeChat(client).say("o-vera", "充值 A301 100")
    assert "未执行" in reply and "只读" in reply


def test_cancel_drops_the_pending_command(client, sandbox, session, two_sites):
    wechat = WeChat(client)
    code = _code(wechat.say("o-alice", "拉闸 A301"))
    assert "已取消" in wechat.say("o-alice", "取消")
    assert "没有待确认" in wechat.say("o-alice", f"确认 {code}")


def test_reports_are_answered_later_by_a_customer_service_message(client, sandbox, session, factory, two_sites):
    from core.models import Site
    site_b = session.scalar(select(Site).where(Site.name == "Site B"))
    factory.account(room=room(factory, session, site_b, "B302"), balance_fen=100)  # low, but not alice's
    wechat = WeChat(client)
    for word in ("欠费", "离线", "日报"):
        assert "稍后" in wechat.say("o-alice", word)
    texts = [m["text"]["content"] for m in sandbox.sent("custom") if m["touser"] == "o-alice"]
    assert len(texts) == 3
    arrears, offline, daily = texts
    assert "A302" in arrears and "B302" not in arrears
    assert "离线表" in offline and "日报" in daily


def test_unknown_manager_commands_get_help(client, sandbox, two_sites):
    assert "管理命令" in WeChat(client).say("o-alice", "whatever")


def test_guessing_the_code_cancels_the_command(client, sandbox, session, two_sites):
    from bot.manager_chat import MAX_WRONG_CODES
    wechat = WeChat(client)
    code = _code(wechat.say("o-alice", "充值 A301 100"))
    wrong = [f"{(int(code) + i) % 10000:04d}" for i in range(1, MAX_WRONG_CODES + 1)]
    replies = [wechat.say("o-alice", f"确认 {w}") for w in wrong]
    assert all("确认码不对" in r for r in replies[:-1]) and "已取消" in replies[-1]
    assert "没有待确认" in wechat.say("o-alice", f"确认 {code}")
    session.expire_all()
    assert ledger.account_balance(session, two_sites["a"].id) == 10000


def test_a_tariff_change_is_refused_for_the_wrong_unit_and_confirmed_for_the_right_one(
        client, sandbox, session, factory, two_sites):
    from core.models import Site
    from core.tariffs.store import add_plan
    site_a = session.scalar(select(Site).where(Site.name == "Site A"))
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site_a.id)
    add_plan(session, "居民电价", {"kind": "flat", "unit": "kWh", "price": "0.6"}, site_id=site_a.id)
    session.commit()
    wechat, a = WeChat(client), two_sites["a"]
    refused = wechat.say("o-alice", "水价 A301 商业电价")
    assert "未执行" in refused and "priced in kWh; a water meter needs m3" in refused
    ask = wechat.say("o-alice", "电价 A301 居民电价")
    assert "请确认" in ask and "电价 A301 改为 居民电价" in ask
    done = wechat.say("o-alice", f"确认 {_code(ask)}")
    assert "已执行" in done
    session.expire_all()
    assert session.get(Account, a.id).electricity_plan.name == "居民电价"
    assert "电价：居民电价 0.6 元/kWh" in wechat.say("o-alice", "房间 A301")
    assert "未执行" in wechat.say("o-vera", "电价 A301 商业电价")  # a viewer changes no tariff

"""Audit log page: who did what, when, from which front; filters; only the manager's sites."""
from __future__ import annotations

from core import audit
from tests.admin.conftest import room_at


def test_the_audit_log_lists_actions_newest_first_and_filters_them(manage, factory, session):
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000)
    audit.record(session, actor="manager:bob", front="bot", action="recharge", site_id=site.id,
                 account_id=account.id, amount="20.00")
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get("/admin/audit").text
    assert html.index("manager:bob") < html.index("open_account")
    assert "A101" in html and "20.00" in html
    only_bot = manage.client.get("/admin/audit?front=bot").text
    assert "manager:bob" in only_bot and "open_account" not in only_bot
    by_action = manage.client.get("/admin/audit?action=open").text
    assert "open_account" in by_action and "manager:bob" not in by_action
    by_actor = manage.client.get("/admin/audit?actor=bob").text
    assert "manager:bob" in by_actor
    assert "open_account" not in manage.client.get("/admin/audit?until=2000-01-01").text


def test_a_manager_sees_only_the_audit_of_their_sites(manage, factory, session):
    mine, theirs = factory.site("东方广场"), factory.site("西城公寓")
    audit.record(session, actor="manager:x", front="admin", action="trip", site_id=theirs.id)
    audit.record(session, actor="manager:y", front="admin", action="restore", site_id=mine.id)
    session.commit()
    manage.as_manager("alice", sites=[mine])
    html = manage.client.get("/admin/audit").text
    assert "manager:y" in html and "manager:x" not in html
    assert "manager:x" not in manage.client.get(f"/admin/audit?site={theirs.id}").text


def test_actions_taken_on_the_pages_show_up_in_the_audit_log(manage, factory, session):
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000)
    manage.as_manager("alice", sites=[site])
    manage.post(f"/admin/rooms/{account.room_id}/actions/recharge",
                {"amount": "12.34", "op": "9" * 32, "confirm": "yes"})
    html = manage.client.get("/admin/audit?front=admin").text
    assert "manager:alice" in html and "recharge" in html and "12.34" in html


# --- one language (issue 14, item 9) -----------------------------------------------------------

def test_actions_and_details_read_as_words_in_the_managers_language(manage, factory, session, outbox_held):
    from core.ledger import cashdesk
    from core.supply import control
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000)
    control.trip(session, account.id, actor="system:auto", front="job", reason="balance")
    cashdesk.desk_recharge(session, account.id, 1234, actor="manager:bob", front="admin")
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get("/admin/audit").text
    assert "拉闸断电" in html and "命令：拉闸" in html and "电户开户" in html and "充值" in html
    assert "<i>原因</i> 余额不足" in html and "<i>金额</i> 12.34" in html
    assert "{'" not in html and "&#39;reason&#39;" not in html and "balance</span>" not in html
    manage.client.get("/admin/lang/en")
    html = manage.client.get("/admin/audit").text
    assert "Cut supply" in html and "command: relay off" in html and "<i>Reason</i> low balance" in html
    assert "余额不足" not in html


def test_the_room_page_shows_generated_memos_in_the_managers_language(manage, factory, session):
    from core.ledger import cashdesk
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000)
    cashdesk.desk_recharge(session, account.id, 1234, actor="manager:bob", front="admin")
    cashdesk.adjust(session, account.id, 100, reason="抄表差错补回", actor="manager:bob", front="admin")
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "前台充值（现金）" in html and "开户预存" in html and "抄表差错补回" in html
    assert "desk recharge" not in html and "opening balance" not in html
    manage.client.get("/admin/lang/en")
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "Desk recharge (cash)" in html and "Opening balance" in html and "抄表差错补回" in html


def test_memos_and_details_the_code_writes_are_all_worded():
    from admin import labels
    for memo, zh, en in [
        ("electricity usage", "电费", "Electricity usage"), ("water usage", "水费", "Water usage"),
        ("desk recharge (cash)", "前台充值（现金）", "Desk recharge (cash)"),
        ("wechat payment MP202601010001", "微信支付缴费 MP202601010001", "WeChat Pay payment MP202601010001"),
        ("alipay refund R1 of order MP1", "支付宝退款 R1（订单 MP1）", "Alipay refund R1 (order MP1)"),
        ("refund R1 failed at wechat", "退款 R1 未成功（微信支付），已退回", "Refund R1 failed at WeChat Pay; put back"),
        ("refund", "退款", "Refund"), ("reversal of entry 42", "冲正（流水 42）", "Reversal of entry 42"),
        ("settlement on closing (writeoff)", "销户结算（核销）", "Settlement on closing (write off)"),
        ("chat recharge by li", "聊天充值（li）", "Chat recharge by li"), ("手写的备注", "手写的备注", "手写的备注"),
    ]:
        assert (labels.memo_text(memo, "zh"), labels.memo_text(memo, "en")) == (zh, en), memo
    shown = labels.describe({"params": {"reason": "enforce", "amount_fen": 5000}, "bound": True,
                             "levels": [{"amount_fen": 5000}, {"amount_fen": 2000}], "meters": ["E1", "W1"]}, "zh")
    assert shown == [("原因", "状态纠正"), ("金额", "50.00"), ("已绑定", "✓"), ("报警金额", "50.00 / 20.00"),
                     ("表号", "E1、W1")]


def test_every_action_the_code_records_has_a_label():
    """Every audit action written anywhere (literals, and the f-strings' families) reads as words."""
    import ast
    from pathlib import Path

    from admin import labels
    from bot.manager_chat import ALIASES
    from core.models.command import COMMAND_KINDS
    from core.models.payment import REFUND_STATES
    families = {"command:": [f"command:{k}" for k in COMMAND_KINDS], "chat:": [f"chat:{c}" for c in ALIASES.values()],
                "refund_": [f"refund_{s}" for s in REFUND_STATES]}
    root = Path(__file__).resolve().parents[2]
    found: set[str] = set()
    keys: set[str] = set()
    for area in ("core", "bot", "admin", "miniapp_api", "hardware", "meterpay"):
        for path in (root / area).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "record"):
                    continue
                keys.update(kw.arg for kw in node.keywords if kw.arg)
                for kw in node.keywords:
                    if kw.arg != "action":
                        continue
                    for part in ast.walk(kw.value):
                        if isinstance(part, ast.JoinedStr):
                            prefix = part.values[0].value if isinstance(part.values[0], ast.Constant) else ""
                            assert prefix in families, f"{path}: an action family {prefix!r} without labels"
                            found.update(families[prefix])
                        elif isinstance(part, ast.Constant) and isinstance(part.value, str):
                            found.add(part.value)
    found = {a for a in found if a not in families}  # the f-strings' own prefixes
    assert {"open_account", "trip", "restore", "keep_power_off", "command:relay_off", "chat:trip",
            "refund_failed", "bind_manager_wechat"} <= found
    unlabelled = sorted(a for a in found if labels.action_label(a, "zh") == a)
    assert unlabelled == []
    untranslated = sorted(a for a in found if labels.action_label(a, "en") == labels.action_label(a, "zh"))
    assert untranslated == []
    details = keys - {"actor", "front", "action", "site_id", "account_id"}
    assert {"reason", "amount", "params"} <= details
    assert sorted(details - set(labels.DETAIL_KEYS)) == []

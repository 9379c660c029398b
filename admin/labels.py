"""Words for what the code records: audit actions and their details, ledger memos.

The audit log stores actions as codes (``open_account``, ``command:relay_off``, ``chat:trip``) and
details as the keyword arguments of ``core.audit.record`` (``{"reason": "balance"}``); ledger
entries carry memos written by the code (``desk recharge (cash)``, ``electricity usage``). The
pages show them in the manager's language, Chinese first, through the one catalog
(core/translations): :func:`action_label`, :func:`describe` and :func:`memo_text`. Anything
unknown is shown as it was stored. Pure functions of their arguments (``lang`` is "zh" or "en").
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from core import i18n
from core.models.payment import REFUND_STATES


def _(text: str) -> str:
    """Marks a catalog text (its Chinese id); it is translated where it is shown."""
    return text


def tr(text: str, lang: str, **values) -> str:
    return i18n.gettext(text, lang, **values)


# Full catalog texts (one text, one English: "拉闸" alone reads "off" elsewhere on the pages).
COMMANDS = {
    "relay_off": _("命令：拉闸"), "relay_on": _("命令：合闸"), "valve_close": _("命令：关阀"),
    "valve_open": _("命令：开阀"), "recharge": _("命令：表端充值"), "set_prices": _("命令：设置表内电价"),
    "set_tou": _("命令：设置表内时段"), "set_alarms": _("命令：设置表内报警"), "keep_power_on": _("命令：保电"),
    "keep_power_off": _("命令：取消保电"), "sync_clock": _("命令：校时"),
}
CHAT_COMMANDS = {
    "status": _("聊天命令：房间状态"), "trip": _("聊天命令：拉闸"), "restore": _("聊天命令：合闸"),
    "recharge": _("聊天命令：充值"), "refund": _("聊天命令：退费"), "keep": _("聊天命令：保电"),
    "arrears": _("聊天命令：欠费"), "offline": _("聊天命令：离线"), "daily": _("聊天命令：日报"),
    "confirm": _("聊天命令：确认"), "cancel": _("聊天命令：取消"), "help": _("聊天命令：帮助"),
    "tariff": _("聊天命令：更改电价"), "water_tariff": _("聊天命令：更改水价"), "batch": _("聊天命令：批量操作"),
}
REFUND_STATE_WORDS = {"requested": _("退款已申请"), "pending": _("退款处理中"), "unknown": _("退款结果未知"),
                      "abnormal": _("退款异常"), "succeeded": _("退款成功"), "failed": _("退款失败")}
AUDIT_ACTIONS = {
    "open_account": _("电户开户"), "close_account": _("销户"), "recharge": _("充值"), "payment": _("在线支付"),
    "refund": _("退款"), "adjustment": _("调账"), "reversal": _("冲正流水"), "trip": _("拉闸断电"),
    "restore": _("合闸送电"), "keep_power_on": _("开启保电"), "keep_power_off": _("取消保电"),
    "set_alarm_levels": _("修改报警金额"), "change_tariff": _("更改电价"), "replace_meter": _("换表"),
    "set_notify_channels": _("设置通知方式"), "binding": _("租户绑定房间"), "binding_refused": _("绑定被拒"),
    "bind_manager_wechat": _("绑定管理员微信"), "payment_flagged": _("支付待核查"),
    "payment_second_txn": _("重复支付"), "reconciliation_mismatch": _("对账不符"),
    "supply_cut_held": _("保电中，暂不断电"), "supply_cut_deferred": _("友好时段，推迟断电"),
    "supply_cut_cancelled": _("取消断电"),
    "refund_stuck": _("退款久未完成"), "refund_abnormal_resolved": _("退款异常已处理"),
    "meter_credit": _("写入电表"), "copy_tariff_template": _("复制价格模板"),
    "batch_create": _("创建批量任务"), "batch_confirm": _("确认批量任务"), "batch_run": _("立即执行批量任务"),
    "batch_cancel": _("取消批量任务"), "batch_stop": _("停止批量任务"), "batch_retry": _("重试批量任务"),
    "batch_start": _("批量任务开始"), "batch_finish": _("批量任务完成"), "charge": _("收费扣款"),
    # a state added later reads as its code until it has words (a test lists what the code records)
    **{f"refund_{state}": REFUND_STATE_WORDS[state] for state in REFUND_STATES if state in REFUND_STATE_WORDS},
}

DETAIL_KEYS = {
    "closing_totals": _("销户读数"), "new_plan_id": _("新方案 ID"), "plan": _("价格方案"), "plan_id": _("方案 ID"),
    "tariffs": _("价格方案"), "template_id": _("模板 ID"), "utility": _("能源类型"),
    "amount": _("金额"), "amount_fen": _("金额"), "balance": _("余额"), "reason": _("原因"), "entry_id": _("流水号"),
    "order_no": _("订单号"), "refund_no": _("退款单号"), "txn_id": _("交易号"), "channel": _("渠道"),
    "to": _("退往"), "room": _("房间号"), "tenant": _("租户"), "meters": _("表号"), "meter_id": _("电表 ID"),
    "opening_balance": _("开户金额"), "settlement": _("结算方式"), "settled": _("结算金额"),
    "old_plan_id": _("原方案 ID"), "new_plan": _("新方案"), "levels": _("报警金额"), "commands": _("命令号"),
    "command_id": _("命令号"), "params": _("参数"), "due_at": _("断电时间"), "text": _("内容"), "refused": _("未执行"),
    "reversed_entry": _("被冲正流水"), "old_serial": _("旧表号"), "new_serial": _("新表号"),
    "final_total": _("旧表末读数"), "first_total": _("新表起读数"), "channels": _("通知方式"), "manager": _("管理员"),
    "bound": _("已绑定"), "billed": _("已计费"), "field": _("字段"), "day": _("日期"), "count": _("条数"),
    "queue": _("队列"), "purchase_count": _("购电次数"), "on": _("开启"), "state": _("状态"),
    "attempts": _("尝试次数"), "last_error": _("最近错误"), "outcome": _("处理结果"), "note": _("备注"),
    "task_id": _("批量任务号"), "batch_action": _("批量操作"), "what": _("操作内容"), "items": _("条目数"),
    "scheduled_at": _("计划时间"), "unsent": _("未发送条目"), "failed_only": _("仅失败条目"), "code": _("收费代码"),
    "queued": _("排队中"), "sent": _("已发送"), "confirmed": _("已确认"), "failed": _("失败"), "skipped": _("已跳过"),
    "cancelled": _("已取消"), "counts": _("条目统计"),
}
# --- monthend (issue 12: charges, apportionment, month-end run) ---
AUDIT_ACTIONS.update({
    "charge_scheme_add": _("新建收费方案"), "charge_scheme_active": _("启用或停用收费方案"),
    "apportion_rule_add": _("新建公摊规则"), "meter_plan_set": _("设置公区表电价方案"),
    "month_end_step": _("月末结算步骤"), "month_end_run": _("月末结算"),
})
DETAIL_KEYS.update({
    "scheme_id": _("收费方案 ID"), "code": _("编码"), "name": _("名称"), "active": _("启用"),
    "rule_id": _("公摊规则 ID"), "basis": _("分摊方式"), "tariff": _("电价方案"), "period": _("月份"),
    "step": _("步骤"), "items": _("明细数"), "entries": _("记账笔数"), "bills": _("账单数"), "problems": _("问题数"),
})
# --- bills (issue 12) ---
AUDIT_ACTIONS.update({
    "bills_generated": _("生成账单"), "bills_confirmed": _("确认账单"), "bill_payment": _("账单缴费"),
    "bill_credit": _("账单冲减"), "bill_correction": _("补开账单"), "arrears_notice": _("发送欠费通知"),
})
DETAIL_KEYS.update({
    "period": _("账期"), "bill_no": _("账单号"), "to_wallet": _("转入余额"), "credit_no": _("冲减单号"),
    "corrects": _("更正的账单"), "notice": _("第几次通知"),
})
REASONS = {
    "balance": _("余额不足"), "manual": _("手动"), "manager": _("管理员操作"), "recharged": _("已充值"),
    "enforce": _("状态纠正"), "cut not confirmed": _("断电未确认"), "restore not confirmed": _("复电未确认"),
}
CHANNELS = {"wechat": _("微信支付"), "alipay": _("支付宝"), "bank": _("银行转账")}
ACCOUNTS = {"cash:desk": _("前台现金"), "clearing:wechat": _("微信支付"), "clearing:alipay": _("支付宝"),
            "clearing:bank": _("银行转账")}
SETTLEMENTS = {"refund": _("退款"), "writeoff": _("核销")}
NOTIFY_CHANNELS = {"wechat_template": _("公众号消息"), "miniapp_subscribe": _("小程序订阅消息"), "sms": _("短信"),
                   "voice": _("语音电话"), "email": _("邮件"), "webhook": "webhook"}
METHODS = {"cash": _("现金"), "card": _("刷卡"), "transfer": _("转账")}
VALUE_WORDS = {"reason": REASONS, "refused": REASONS, "channel": CHANNELS, "to": ACCOUNTS, "settlement": SETTLEMENTS,
               "channels": NOTIFY_CHANNELS}


def action_label(action: str, lang: str) -> str:
    """An audit action as a person reads it: ``command:relay_off`` -> 命令：拉闸, ``chat:trip`` ->
    聊天命令：拉闸; an unknown code as it is."""
    if action in AUDIT_ACTIONS:
        return tr(AUDIT_ACTIONS[action], lang)
    prefix, _sep, rest = action.partition(":")
    if prefix == "command" and rest in COMMANDS:
        return tr(COMMANDS[rest], lang)
    if prefix == "chat" and rest in CHAT_COMMANDS:
        return tr(CHAT_COMMANDS[rest], lang)
    return action


def describe(detail: dict | None, lang: str, tz: str = "Asia/Shanghai") -> list[tuple[str, str]]:
    """An audit row's details as (label, text) pairs; nested dicts (a command's ``params``) are
    flattened into their own pairs, amounts in fen shown in yuan, datetimes in ``tz``."""
    out: list[tuple[str, str]] = []
    for key, value in (detail or {}).items():
        if isinstance(value, dict):
            out.extend(describe(value, lang, tz))
            continue
        out.append((tr(DETAIL_KEYS[key], lang) if key in DETAIL_KEYS else key, _value(key, value, lang, tz)))
    return out


def _value(key: str, value, lang: str, tz: str) -> str:
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if key == "amount_fen" and isinstance(value, int):
        from core.ledger.money import format_fen
        return format_fen(value)
    if key == "levels" and isinstance(value, list):
        from core.ledger.money import format_fen
        return " / ".join(format_fen(int(lv.get("amount_fen", 0))) if isinstance(lv, dict) else str(lv)
                          for lv in value)
    if isinstance(value, list | tuple):
        return "、".join(_value(key, v, lang, tz) for v in value)
    words = VALUE_WORDS.get(key, {})
    if isinstance(value, str) and value in words:
        return tr(words[value], lang)
    if key == "due_at" and isinstance(value, str):
        try:
            return datetime.fromisoformat(value).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return value
    return "" if value is None else str(value)


# --- ledger memos written by the code ------------------------------------------------------------

def _channel(text: str, lang: str) -> str:
    return tr(CHANNELS[text], lang) if text in CHANNELS else text


def _method(text: str, lang: str) -> str:
    return tr(METHODS[text], lang) if text in METHODS else text


def _settlement(text: str, lang: str) -> str:
    return tr(SETTLEMENTS[text], lang) if text in SETTLEMENTS else text


# (pattern of the whole memo, catalog text with %(group)s, how to read some groups)
MEMOS: list[tuple[re.Pattern, str, dict[str, Callable[[str, str], str]]]] = [
    (re.compile(r"electricity usage"), _("电费"), {}),
    (re.compile(r"water usage"), _("水费"), {}),
    (re.compile(r"opening balance"), _("开户预存"), {}),
    (re.compile(r"desk recharge \((?P<method>[^)]+)\)"), _("前台充值（%(method)s）"), {"method": _method}),
    (re.compile(r"(?P<channel>\w+) payment (?P<no>\S+)"), _("%(channel)s缴费 %(no)s"), {"channel": _channel}),
    (re.compile(r"(?P<channel>\w+) refund (?P<refund>\S+) of order (?P<no>\S+)"),
     _("%(channel)s退款 %(refund)s（订单 %(no)s）"), {"channel": _channel}),
    (re.compile(r"refund (?P<refund>\S+) failed at (?P<channel>\w+)"),
     _("退款 %(refund)s 未成功（%(channel)s），已退回"), {"channel": _channel}),
    (re.compile(r"refund"), _("退款"), {}),
    (re.compile(r"reversal of entry (?P<entry>\d+)"), _("冲正（流水 %(entry)s）"), {}),
    (re.compile(r"settlement on closing \((?P<how>\w+)\)"), _("销户结算（%(how)s）"), {"how": _settlement}),
    (re.compile(r"chat recharge by (?P<who>.+)"), _("聊天充值（%(who)s）"), {}),
    (re.compile(r"chat refund by (?P<who>.+)"), _("聊天退费（%(who)s）"), {}),
]


def memo_text(memo: str | None, lang: str) -> str:
    """A memo the code wrote (``desk recharge (cash)``) in ``lang`` (前台充值（现金）); a memo a person
    typed is shown as typed."""
    text = (memo or "").strip()
    for pattern, words, readers in MEMOS:
        match = pattern.fullmatch(text)
        if match:
            values = {k: readers[k](v, lang) if k in readers else v for k, v in match.groupdict().items()}
            return tr(words, lang, **values)
    return memo or ""


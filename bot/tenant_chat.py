"""Tenant chat: balance (余额), usage (用电/用水), recharge (充值), bills (账单: open bills, then the latest
wallet entries), alerts (通知), help (帮助).

Chinese first, English aliases; menu clicks send the same words as event keys. Every answer
reads through core services and the account the WeChat user is bound to.
"""
from __future__ import annotations

from html import escape

from sqlalchemy.orm import Session

from bot import binding, settings
from core import clock, i18n
from core.alarms import notifications
from core.alarms.shown import ShownBalance, shown_balance, shown_fee_status
from core.alarms.status import alarm_levels
from core.billing.usage_summary import meter_usage, recent_wallet_entries
from core.bills import service as bills_service
from core.config import get_settings
from core.ledger.money import format_fen
from core.models import Account, Room, Site, Tenant
from core.tariffs.store import plan_summary

STATUS_TEXT = {"normal": "正常", "alarm1": "余额偏低", "alarm2": "余额不足", "alarm3": "余额告急",
               "arrears": "已欠费", "keep_power": "保电中", "closed": "已销户", "unread": "电表尚未读数"}
CHANNEL_WORDS = {"微信": "wechat_template", "wechat": "wechat_template", "小程序": "miniapp_subscribe",
                 "短信": "sms", "sms": "sms", "邮件": "email", "email": "email", "语音": "voice", "voice": "voice"}
CHANNEL_NAMES = {"wechat_template": "微信", "miniapp_subscribe": "小程序", "sms": "短信", "email": "邮件",
                 "voice": "语音"}

HELP = ("可以发送：\n余额 — 查余额\n用电 / 用水 — 今日和本月用量\n充值 — 去充值\n账单 — 未付账单和最近收支\n"
        "通知 — 查看或设置提醒方式（如：通知 短信 开）\n帮助 — 本说明\n"
        "English: balance, usage, recharge, bills, alerts, help")
NOT_BOUND = "您还没有绑定房间。请扫描房间里的二维码绑定后再查询。"


def _room(session: Session, account: Account) -> str:
    room = session.get(Room, account.room_id)
    return room.number if room else "?"


def balance(session: Session, openid: str, _args: list[str]) -> str:
    accounts = binding.accounts_of(session, openid)
    if not accounts:
        return NOT_BOUND
    lines = []
    for a in accounts:
        site = session.get(Site, a.site_id)
        shown = shown_balance(session, a)
        status = shown_fee_status(shown, alarm_levels(a.alarm_levels, site.settings), keep_power=a.keep_power)
        lines.append(f"房间 {_room(session, a)}：余额 {balance_words(shown, STATUS_TEXT.get(status, status), site)}")
    return "\n".join(lines)


def balance_words(shown: ShownBalance, status: str, site: Site | None) -> str:
    """"50.00 元（正常）"; a prepaid meter: "190.11 元（电表 11-27 14:05 读数，正常）", and the wallet money
    not on the meter (a recharge on its way, or money never pushed such as an opening balance);
    a meter never read: "未知（电表尚未读数）"."""
    if shown.source == "wallet":
        return f"{format_fen(shown.fen or 0)} 元（{status}）"
    pending = f"；另有 {format_fen(shown.pending_fen)} 元未写入电表" if shown.pending_fen > 0 else ""
    if shown.fen is None:
        return f"未知（电表尚未读数{pending}）"
    when = ""
    if shown.read_at is not None:
        from zoneinfo import ZoneInfo
        zone = ZoneInfo((site.timezone if site else None) or get_settings().timezone)
        when = f" {shown.read_at.astimezone(zone):%m-%d %H:%M}"
    return f"{format_fen(shown.fen)} 元（电表{when} 读数，{status}{pending}）"


def usage(session: Session, openid: str, _args: list[str], kind: str | None = None) -> str:
    accounts = binding.accounts_of(session, openid)
    if not accounts:
        return NOT_BOUND
    now = clock.now()
    lines = []
    for a in accounts:
        site = session.get(Site, a.site_id)
        for m in a.meters:
            if m.status != "active" or (kind and m.kind != kind):
                continue
            u = meter_usage(session, m, now, site.timezone or get_settings().timezone)
            word = "用水" if m.kind == "water" else "用电"
            plan = plan_summary(session, a.plan_id_for(m.kind))
            price = (f"{'水价' if m.kind == 'water' else '电价'}：{plan['plan']} {plan['price']}" if plan
                     else "未设置价格")
            lines.append(f"房间 {_room(session, a)} {word}（表 {m.serial}）：今日 {u.today} {u.unit}，"
                         f"本月 {u.month} {u.unit}；{price}")
    return "\n".join(lines) or "没有找到对应的表。"


def recharge(session: Session, openid: str, _args: list[str]) -> str:
    accounts = binding.accounts_of(session, openid)
    if not accounts:
        return NOT_BOUND
    lines = []
    for a in accounts:
        page = f"{settings.miniapp_recharge_page()}?account={a.id}"
        web = f"{get_settings().public_url.rstrip('/')}/m/recharge?account={a.id}"
        label = f"房间 {escape(_room(session, a))} 点击充值"
        if settings.miniapp_appid():
            lines.append(f'<a data-miniprogram-appid="{escape(settings.miniapp_appid())}" '
                         f'data-miniprogram-path="{escape(page)}" href="{escape(web)}">{label}</a>')
        else:
            lines.append(f'<a href="{escape(web)}">{label}</a>')
    return "\n".join(lines)


def bills(session: Session, openid: str, _args: list[str]) -> str:
    accounts = binding.accounts_of(session, openid)
    if not accounts:
        return NOT_BOUND
    lines = []
    owed = bills_service.open_bills(session, [a.id for a in accounts])
    for a in accounts:
        mine = [b for b in owed if b.account_id == a.id]
        if mine:
            today = bills_service.site_today(session.get(Site, a.site_id))
            lines.append(f"房间 {_room(session, a)} 未付账单：")
            for b in mine:
                late = "，已逾期" if bills_service.is_overdue(b, today) else ""
                due = f"（{b.due_date:%Y-%m-%d} 到期{late}）" if b.due_date else ""
                lines.append(f"  {b.period} {b.bill_no} 应付 {format_fen(b.open_fen)} 元{due}")
        elif a.billing_mode == "postpaid":
            lines.append(f"房间 {_room(session, a)} 没有未付账单")
        lines.append(f"房间 {_room(session, a)} 最近收支：")
        entries = recent_wallet_entries(session, a.id)
        for e in entries:
            sign = "+" if e.amount_fen > 0 else "-"
            lines.append(f"  {e.at.astimezone(clock_zone()):%m-%d %H:%M} {i18n.entry_kind_label(e.kind, chat=True)} "
                         f"{sign}{format_fen(abs(e.amount_fen))}")
        if not entries:
            lines.append("  暂无记录")
    return "\n".join(lines)


def alerts(session: Session, openid: str, args: list[str]) -> str:
    """通知 — show; 通知 短信 开|关 — switch a channel; 通知 邮件 a@b.cn — set the address and switch on."""
    accounts = binding.accounts_of(session, openid)
    if not accounts:
        return NOT_BOUND
    tenant = session.get(Tenant, accounts[0].tenant_id)
    if len(args) >= 2:
        channel = CHANNEL_WORDS.get(args[0].lower())
        if channel is None:
            return "提醒方式：微信、小程序、短信、邮件、语音。例如：通知 短信 开"
        email = args[1] if channel == "email" and "@" in args[1] else None
        on = email is not None or args[1].lower() in ("开", "on", "打开", "1")
        if not on and args[1].lower() not in ("关", "off", "关闭", "0"):
            return "请说 开 或 关，例如：通知 短信 开"
        current = list(tenant.notify_channels or notifications.default_channels())
        wanted = sorted(set(current) | {channel}) if on else [c for c in current if c != channel]
        notifications.set_tenant_channels(session, tenant.id, wanted, email=email, actor=f"wechat:{openid}",
                                          front="bot")
    chosen = tenant.notify_channels or notifications.default_channels()
    names = "、".join(CHANNEL_NAMES[c] for c in chosen if c in CHANNEL_NAMES) or "无"
    return f"当前提醒方式：{names}。设置：通知 短信 开 / 通知 语音 关 / 通知 邮件 you@example.com"


def help_(session: Session, openid: str, _args: list[str]) -> str:
    return HELP


def clock_zone():
    from zoneinfo import ZoneInfo
    return ZoneInfo(get_settings().timezone)


COMMANDS = {
    "余额": balance, "balance": balance, "查询": balance,
    "用电": lambda s, o, a: usage(s, o, a, "electricity"), "用水": lambda s, o, a: usage(s, o, a, "water"),
    "用量": usage, "usage": usage,
    "充值": recharge, "recharge": recharge, "topup": recharge,
    "账单": bills, "bills": bills, "bill": bills,
    "通知": alerts, "提醒": alerts, "alerts": alerts,
    "帮助": help_, "help": help_, "?": help_, "？": help_,
}
# Menu click event keys (set them in the official-account menu).
MENU_KEYS = {"BALANCE": "余额", "USAGE": "用量", "RECHARGE": "充值", "BILLS": "账单", "HELP": "帮助", "ALERTS": "通知"}


def handle_known(text: str) -> bool:
    words = text.split()
    return bool(words) and words[0].lower() in COMMANDS


def handle(session: Session, openid: str, text: str) -> str:
    words = text.split()
    if not words:
        return HELP
    fn = COMMANDS.get(words[0].lower())
    return fn(session, openid, words[1:]) if fn else HELP

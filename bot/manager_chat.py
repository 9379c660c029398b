"""Manager chat commands, each limited to the manager's sites.

    房间 301          room status                     (status 301)
    拉闸 301 / 合闸 301  trip / restore supply           (trip 301 / restore 301)
    充值 301 100      desk recharge, yuan             (recharge 301 100)
    退费 301 50       refund to the desk, yuan        (refund 301 50)
    保电 301 开|关     keep-power on / off             (keep 301 on|off)
    电价 301 商业电价   the electricity plan            (tariff 301 NAME)
    水价 301 商业水价   the water plan                  (water-tariff 301 NAME)
    欠费 / 离线 / 日报  arrears, offline meters, today  (arrears / offline / daily) — answered later
    确认 1234 / 取消   confirm / cancel the pending command (confirm 1234 / cancel)
    批量 拉闸 A栋3层   a batch task over a floor, building, site or status (bot/batch_chat.py)

Commands that move money or change supply ask for a confirmation code first; the confirmed
action runs under the key ``bot:confirm:<id>``, so a repeated confirmation moves nothing twice.
Every command is written to the audit log with the manager, and calls the same core service as
the admin pages (core.supply.control, core.ledger.cashdesk).
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import batch_chat, settings
from bot.tenant_chat import balance_words
from core import audit, clock
from core.alarms.shown import shown_balance, shown_fee_status
from core.alarms.status import alarm_levels
from core.errors import Forbidden, MeterpayError, NotFound, ValidationError
from core.jobs import enqueue_after_commit
from core.ledger import account_balance, cashdesk
from core.ledger.money import format_fen, parse_yuan
from core.models import Account, AuditLog, BotConfirmation, Manager, Room, Site, SupplyControl, Tenant
from core.models.meter import METER_KINDS
from core.sites import accounts
from core.sites.managers import can_access_site, role_at, site_ids_for
from core.sites.room_lookup import find_room, open_account_at
from core.sites.summary import accounts_needing_attention, day_totals, offline_meters
from core.supply import control as supply
from core.tariffs.store import check_unit, find_plan, plan_summary

ALIASES = {
    "房间": "status", "status": "status", "room": "status", "查": "status",
    "拉闸": "trip", "断电": "trip", "trip": "trip", "cut": "trip",
    "合闸": "restore", "送电": "restore", "restore": "restore", "close": "restore",
    "充值": "recharge", "recharge": "recharge", "topup": "recharge",
    "退费": "refund", "refund": "refund",
    "保电": "keep", "keep": "keep", "keeppower": "keep",
    "电价": "tariff", "更改电价": "tariff", "tariff": "tariff",
    "水价": "water_tariff", "更改水价": "water_tariff", "water-tariff": "water_tariff",
    "欠费": "arrears", "arrears": "arrears",
    "离线": "offline", "offline": "offline",
    "日报": "daily", "daily": "daily", "report": "daily",
    "确认": "confirm", "confirm": "confirm", "ok": "confirm",
    "取消": "cancel", "cancel": "cancel",
    "批量": "batch", "batch": "batch",
    "帮助": "help", "help": "help", "?": "help", "？": "help",
}
ACTIONS = ("trip", "restore", "recharge", "refund", "keep", "tariff", "water_tariff")
MAX_WRONG_CODES = 5
LATER = ("arrears", "offline", "daily")
ACTION_WORDS = {"trip": "拉闸", "restore": "合闸", "recharge": "充值", "refund": "退费", "keep": "保电",
                "tariff": "电价", "water_tariff": "水价"}
STATUS_TEXT = {"normal": "正常", "alarm1": "一级告警", "alarm2": "二级告警", "alarm3": "三级告警",
               "arrears": "欠费", "keep_power": "保电", "closed": "销户", "unread": "电表尚未读数"}

HELP = ("管理命令：\n房间 301 — 房间状态\n拉闸 301 / 合闸 301 — 断电 / 送电\n充值 301 100 — 前台充值（元）\n"
        "退费 301 50 — 退费（元）\n保电 301 开|关\n电价 301 商业电价 / 水价 301 商业水价 — 更改价格方案\n"
        "欠费 — 告警和欠费户\n离线 — 离线表\n日报 — 今日汇总\n"
        "确认 1234 / 取消 — 确认或取消待执行的命令\n"
        "批量 拉闸 A栋3层 / 批量 充值 A栋3层 20 / 批量 进度 12 — 批量操作\n"
        "English: status, trip, restore, recharge, refund, keep, tariff, water-tariff, arrears, offline, daily, "
        "confirm, cancel")


def actor(manager: Manager) -> str:
    return f"manager:{manager.username}"


def manager_for(session: Session, openid: str) -> Manager | None:
    if not openid:
        return None
    return session.scalar(select(Manager).where(Manager.wechat_openid == openid, Manager.active.is_(True)))


def is_command(text: str) -> bool:
    words = text.split()
    return bool(words) and words[0].lower() in ALIASES


def handle(session: Session, manager: Manager, text: str, *, msg_key: str = "") -> str:
    """Answer one chat line from a manager. Domain errors become the reply; nothing half-done stays."""
    words = text.split()
    cmd = ALIASES.get(words[0].lower()) if words else None
    if cmd is None or cmd == "help":
        return HELP
    who, line = actor(manager), text[:200]
    try:
        reply = _run(session, manager, cmd, words[1:], msg_key)
    except MeterpayError as exc:
        # Undo whatever the command began (no SAVEPOINT: see core.db), then log the refusal.
        session.rollback()
        audit.record(session, actor=who, front="bot", action=f"chat:{cmd}", text=line, refused=exc.message)
        return f"未执行：{exc.message}"
    audit.record(session, actor=who, front="bot", action=f"chat:{cmd}", text=line)
    return reply


def _run(session: Session, manager: Manager, cmd: str, args: list[str], msg_key: str) -> str:
    if cmd == "status":
        return room_status(session, manager, _need(args, 1, "房间 301")[0])
    if cmd in ACTIONS:
        return ask_confirmation(session, manager, cmd, args)
    if cmd == "batch":
        if batch_chat.is_progress(args):
            return batch_chat.progress(session, manager, args)
        return ask_batch_confirmation(session, manager, args)
    if cmd == "confirm":
        return confirm(session, manager, _need(args, 1, "确认 1234")[0])
    if cmd == "cancel":
        n = _cancel_pending(session, manager)
        return "已取消待确认的命令。" if n else "没有待确认的命令。"
    if cmd in LATER:
        enqueue_after_commit(session, "bot.jobs.answer_later", manager.id, manager.wechat_openid, cmd,
                             msg_key or f"{cmd}:{secrets.token_hex(6)}", queue="notify")
        return "正在统计，结果稍后发送给您。"
    return HELP


def _need(args: list[str], n: int, example: str) -> list[str]:
    if len(args) < n:
        raise ValidationError(f"格式：{example}")
    return args


def _account_for(session: Session, manager: Manager, room_text: str) -> tuple[Room, Account]:
    room = find_room(session, manager.id, room_text)
    if not can_access_site(session, manager.id, room.site_id):  # find_room scopes already; keep the guard
        raise Forbidden("not your site")
    return room, open_account_at(session, room)


def room_status(session: Session, manager: Manager, room_text: str) -> str:
    room, account = _account_for(session, manager, room_text)
    site = session.get(Site, account.site_id)
    tenant = session.get(Tenant, account.tenant_id)
    shown = shown_balance(session, account)
    status = shown_fee_status(shown, alarm_levels(account.alarm_levels, site.settings), keep_power=account.keep_power)
    lines = [f"房间 {room.number}（{site.name}）", f"租户：{tenant.name} {_mask(tenant.phone)}",
             f"余额：{balance_words(shown, STATUS_TEXT.get(status, status), site)}",
             f"保电：{'开' if account.keep_power else '关'}"]
    for kind in METER_KINDS:
        if any(m.kind == kind and m.status == "active" for m in account.meters):
            plan = plan_summary(session, account.plan_id_for(kind))
            lines.append(f"{'水价' if kind == 'water' else '电价'}：" + (f"{plan['plan']} {plan['price']}" if plan
                                                                         else "未设置（读数暂不计费）"))
    for m in account.meters:
        if m.status != "active":
            continue
        state = m.valve_state if m.kind == "water" else m.relay_state
        lines.append(f"表 {m.serial}：{'在线' if m.online else '离线'}，"
                     f"{'阀门' if m.kind == 'water' else '继电器'} {state}"
                     + (f"（指令 {m.commanded_state}）" if m.commanded_state and m.commanded_state != state else ""))
    ctl = session.scalar(select(SupplyControl).where(SupplyControl.account_id == account.id))
    if ctl is not None and ctl.state != "on":
        when = f"，{ctl.due_at:%m-%d %H:%M} UTC" if ctl.due_at else ""
        shown = {"cut": "已自动断电", "deferred": "友好时段，延后断电", "held": "保电中，暂不断电"}.get(
            ctl.state, ctl.state)
        lines.append(f"自动控制：{shown}{when}")
    return "\n".join(lines)


def _mask(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if phone and len(phone) >= 7 else (phone or "")


def ask_confirmation(session: Session, manager: Manager, action: str, args: list[str]) -> str:
    examples = {"trip": "拉闸 301", "restore": "合闸 301", "recharge": "充值 301 100", "refund": "退费 301 50",
                "keep": "保电 301 开", "tariff": "电价 301 商业电价", "water_tariff": "水价 301 商业水价"}
    args = _need(args, 2 if action in ("recharge", "refund", "keep", "tariff", "water_tariff") else 1,
                 examples[action])
    room, account = _account_for(session, manager, args[0])
    if role_at(session, manager.id, room.site_id) == "viewer":
        raise Forbidden("只读账号不能执行此操作")
    params: dict = {"account_id": account.id, "room": room.number}
    if action in ("recharge", "refund"):
        amount = parse_yuan(args[1])
        if amount <= 0:
            raise ValidationError("金额必须大于 0")
        params["amount_fen"] = amount
        what = f"{ACTION_WORDS[action]} {room.number} {format_fen(amount)} 元"
    elif action == "keep":
        word = args[1].lower()
        if word not in ("开", "关", "on", "off"):
            raise ValidationError("格式：保电 301 开|关")
        params["on"] = word in ("开", "on")
        what = f"保电 {room.number} {'开' if params['on'] else '关'}"
    elif action in ("tariff", "water_tariff"):
        # Refused now, before any code, when the plan is unknown or of the wrong unit.
        utility = "water" if action == "water_tariff" else "electricity"
        name = " ".join(args[1:])
        check_unit(find_plan(session, name, room.site_id), utility, name=name)
        if not any(m.kind == utility and m.status == "active" for m in account.meters):
            raise ValidationError(f"房间 {room.number} 没有{'水表' if utility == 'water' else '电表'}")
        params.update(utility=utility, plan=name)
        what = f"{ACTION_WORDS[action]} {room.number} 改为 {name}"
    else:
        what = f"{ACTION_WORDS[action]} {room.number}"
    _cancel_pending(session, manager)
    now = clock.now()
    code = f"{secrets.randbelow(10000):04d}"
    session.add(BotConfirmation(manager_id=manager.id, code=code, action=action, params=params, summary=what,
                                created_at=now, expires_at=now + timedelta(minutes=settings.confirm_minutes())))
    session.flush()
    return f"请确认：{what}（租户 {session.get(Tenant, account.tenant_id).name}）。\n" \
           f"回复「确认 {code}」执行，{settings.confirm_minutes()} 分钟内有效；回复「取消」放弃。"


def ask_batch_confirmation(session: Session, manager: Manager, args: list[str]) -> str:
    """批量 ...: the task is previewed (how many items), and made only on 确认 <code>."""
    task = batch_chat.parse(session, manager, args)
    _cancel_pending(session, manager)
    now = clock.now()
    code = f"{secrets.randbelow(10000):04d}"
    session.add(BotConfirmation(manager_id=manager.id, code=code, action="batch", params=task, summary=task["what"],
                                created_at=now, expires_at=now + timedelta(minutes=settings.confirm_minutes())))
    session.flush()
    minutes = settings.confirm_minutes()
    return f"请确认：{task['what']}。\n回复「确认 {code}」执行，{minutes} 分钟内有效；回复「取消」放弃。"


def _cancel_pending(session: Session, manager: Manager) -> int:
    result = session.execute(update(BotConfirmation).where(BotConfirmation.manager_id == manager.id,
                                                           BotConfirmation.used_at.is_(None))
                             .values(used_at=clock.now()))
    return result.rowcount or 0


def confirm(session: Session, manager: Manager, code: str) -> str:
    now = clock.now()
    row = session.scalar(select(BotConfirmation).where(BotConfirmation.manager_id == manager.id,
                                                       BotConfirmation.used_at.is_(None))
                         .order_by(BotConfirmation.id.desc()).limit(1).with_for_update())
    if row is None:
        raise NotFound("没有待确认的命令")
    if row.expires_at <= now:
        row.used_at = now
        session.flush()
        return "确认码已过期，请重新发送命令。"
    if code.strip() != row.code:
        if _wrong_tries(session, manager, row) + 1 >= MAX_WRONG_CODES:
            row.used_at = now
            session.flush()
            return "确认码错误次数过多，命令已取消，请重新发送。"
        raise ValidationError("确认码不对")
    if row.action == "batch":
        row.used_at = now
        result = batch_chat.create(session, manager, row.params, actor(manager))
        session.flush()
        return result
    account = session.get(Account, int(row.params["account_id"]))
    if account is None or not can_access_site(session, manager.id, account.site_id):
        raise Forbidden("not your site")
    row.used_at = now
    result = execute(session, manager, row)
    session.flush()
    return result


def _wrong_tries(session: Session, manager: Manager, row: BotConfirmation) -> int:
    """Refused confirmations since this code was given (each is in the audit log)."""
    from sqlalchemy import func
    return session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.actor == actor(manager), AuditLog.action == "chat:confirm", AuditLog.at >= row.created_at)) or 0


def execute(session: Session, manager: Manager, row: BotConfirmation) -> str:
    p, who, key = row.params, actor(manager), f"bot:confirm:{row.id}"
    account_id = int(p["account_id"])
    if row.action in ("trip", "restore"):
        fn = supply.trip if row.action == "trip" else supply.restore
        cmds = fn(session, account_id, actor=who, front="bot", reason="manager", key=key)
        return f"已执行：{row.summary}，已向 {len(cmds)} 块表发送指令。发送「房间 {p['room']}」查看结果。"
    if row.action == "recharge":
        cashdesk.desk_recharge(session, account_id, int(p["amount_fen"]), key=key, actor=who, front="bot",
                               memo=f"chat recharge by {manager.username}")
    elif row.action == "refund":
        cashdesk.refund(session, account_id, int(p["amount_fen"]), key=key, actor=who, front="bot",
                        memo=f"chat refund by {manager.username}")
    elif row.action == "keep":
        supply.set_keep_power(session, account_id, bool(p["on"]), actor=who, front="bot")
        return f"已执行：{row.summary}。"
    elif row.action in ("tariff", "water_tariff"):
        accounts.change_tariff(session, account_id, str(p["plan"]), utility=str(p["utility"]), actor=who, front="bot")
        return f"已执行：{row.summary}，从下一次读数起按新方案计费。"
    else:
        raise ValidationError(f"unknown action {row.action}")
    account = session.get(Account, account_id)
    if account is not None and account.billing_mode == "prepaid-meter":
        # the money reaches the meter with the recharge command: the balance is the meter's, once it confirms
        site = session.get(Site, account.site_id)
        shown = shown_balance(session, account)
        status = shown_fee_status(shown, alarm_levels(account.alarm_levels, site.settings if site else None),
                                  keep_power=account.keep_power)
        return (f"已执行：{row.summary}，正在写入电表。电表余额 "
                f"{balance_words(shown, STATUS_TEXT.get(status, status), site)}。")
    return f"已执行：{row.summary}。当前余额 {format_fen(account_balance(session, account_id))} 元。"


def report(session: Session, manager: Manager, cmd: str) -> str:
    """The answers that may take long: arrears, offline meters, today's totals."""
    sites = site_ids_for(session, manager.id)
    if cmd == "arrears":
        lines = accounts_needing_attention(session, sites, limit=50)
        if not lines:
            return "没有告警或欠费的户。"
        return "告警和欠费户（余额从低到高）：\n" + "\n".join(
            f"{line.room} {format_fen(line.balance_fen)} 元 {STATUS_TEXT.get(line.status, line.status)}"
            for line in lines)
    if cmd == "offline":
        rows = offline_meters(session, sites, limit=50)
        if not rows:
            return "所有表都在线。"
        return "离线表：\n" + "\n".join(
            (f"{number or '-'} 表 {m.serial} 最后通讯 {m.last_seen_at.astimezone(_zone()):%m-%d %H:%M}"
             if m.last_seen_at else f"{number or '-'} 表 {m.serial} 从未通讯")
            for m, number in rows)
    if cmd == "daily":
        today = clock.now().astimezone(_zone()).date()
        t = day_totals(session, sites, today, str(_zone()))
        return (f"{today:%Y-%m-%d} 日报：\n充值 {t.recharge_count} 笔，共 {format_fen(t.recharge_fen)} 元\n"
                f"退费 {format_fen(t.refund_fen)} 元\n用电用水扣费 {format_fen(t.consumption_fen)} 元")
    return HELP


def _zone():
    from zoneinfo import ZoneInfo

    from core.config import get_settings
    return ZoneInfo(get_settings().timezone)

"""批量 commands in the manager chat: a batch task over a floor, a building, the whole site or a
monitor status, with the same confirmation-code step as the single commands.

    批量 拉闸 A栋3层        relay_off on floor 3 of building A   (batch trip A:3)
    批量 合闸 A栋           relay_on on building A               (batch restore A)
    批量 保电 全部 / 批量 取消保电 全部 / 批量 校时 A栋3层
    批量 充值 A栋3层 20     a desk recharge of 20 yuan each      (batch recharge A:3 20)
    批量 拉闸 欠费          every room the monitor shows in 欠费
    批量 进度 12            a task's progress                    (batch show 12)

The code is asked for first (``bot.manager_chat.ask``); on ``确认 <code>`` the task is created
confirmed by that manager (``core.batch.tasks.create_task``) and starts at once.
"""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.batch import actions, tasks
from core.batch.selection import STATUSES
from core.errors import Forbidden, NotFound, ValidationError
from core.ledger.money import parse_yuan
from core.models import Building, Floor, Manager, Site
from core.sites.managers import can_access_site, role_at, site_ids_for

WORDS = {"拉闸": "relay_off", "断电": "relay_off", "trip": "relay_off", "合闸": "relay_on", "送电": "relay_on",
         "restore": "relay_on", "保电": "keep_power_on", "keep": "keep_power_on", "取消保电": "keep_power_off",
         "unkeep": "keep_power_off", "校时": "sync_clock", "sync": "sync_clock", "充值": "recharge",
         "recharge": "recharge"}
STATUS_WORDS = {"欠费": "arrears", "离线": "offline", "保电中": "keep_power", "一级告警": "alarm1",
                "二级告警": "alarm2", "三级告警": "alarm3"}
SCOPE = re.compile(r"^(?P<b>[^:：栋]+?)(?:栋|幢|号楼)?(?:[:：]?(?P<f>[^:：层]+?)(?:层|楼)?)?$")
USAGE = "格式：批量 拉闸 A栋3层（或 A栋、全部、欠费）；批量 充值 A栋3层 20；批量 进度 12"


def is_progress(args: list[str]) -> bool:
    return bool(args) and args[0] in ("进度", "show", "状态")


def progress(session: Session, manager: Manager, args: list[str]) -> str:
    if len(args) < 2 or not args[1].isdigit():
        raise ValidationError("格式：批量 进度 12")
    shown = tasks.show(session, int(args[1]), with_items=False)
    task = tasks.get_task(session, int(args[1]))
    if not can_access_site(session, manager.id, task.site_id):
        raise NotFound(f"no batch task {args[1]}")
    c = shown["counts"]
    return (f"批量任务 {shown['id']}（{shown['what']}）：{shown['state']}\n"
            f"已确认 {c['confirmed']}，失败 {c['failed']}，跳过 {c['skipped']}，"
            f"进行中 {c['queued'] + c['sent']}，已取消 {c['cancelled']}，共 {shown['total']} 项")


def parse(session: Session, manager: Manager, args: list[str]) -> dict:
    """The task a 批量 line asks for: {site_id, action, selection, params, what, items}. Raises
    ValidationError for a line it cannot read, Forbidden for a read-only manager."""
    if len(args) < 2 or args[0].lower() not in WORDS:
        raise ValidationError(USAGE)
    action = WORDS[args[0].lower()]
    scope, rest = args[1], args[2:]
    params: dict = {}
    if action == "recharge":
        if not rest:
            raise ValidationError("格式：批量 充值 A栋3层 20")
        params["amount"] = rest[0]
        parse_yuan(rest[0])
    ids = site_ids_for(session, manager.id)
    sites = list(session.scalars(select(Site).where(Site.id.in_(ids)) if ids is not None else select(Site)))
    selection, matches = _scope(session, sites, scope)
    if len(matches) != 1:
        raise ValidationError(f"「{scope}」在{'多个项目' if matches else '您的项目中'}"
                              f"{'都有' if matches else '找不到'}，请在管理后台的批量操作中选择")
    site = matches[0]
    if role_at(session, manager.id, site.id) == "viewer":
        raise Forbidden("只读账号不能执行此操作")
    seen = tasks.preview(session, site_id=site.id, action=action, selection=selection, params=params)
    return {"site_id": site.id, "site": site.name, "action": action, "selection": selection, "params": params,
            "items": seen["items"], "what": f"批量{actions.LABELS[action]} {site.name} {scope}"
            + (f" 每户 {rest[0]} 元" if action == "recharge" else "") + f"（{seen['items']} 项）"}


def _scope(session: Session, sites: list[Site], text: str) -> tuple[dict, list[Site]]:
    if text in ("全部", "all", "所有"):
        return {"all": True}, sites
    if text in STATUS_WORDS or text in STATUSES:
        return {"status": STATUS_WORDS.get(text, text)}, sites
    m = SCOPE.match(text)
    if not m:
        raise ValidationError(USAGE)
    building, floor = m.group("b").strip(), (m.group("f") or "").strip()
    found = []
    for site in sites:
        q = select(Building.id).where(Building.site_id == site.id, Building.name == building)
        if floor:
            q = select(Floor.id).join(Building, Floor.building_id == Building.id).where(
                Building.site_id == site.id, Building.name == building, Floor.name == floor)
        if session.scalar(q.limit(1)) is not None:
            found.append(site)
    return ({"floors": [[building, floor]]} if floor else {"buildings": [building]}), found


def create(session: Session, manager: Manager, params: dict, who: str) -> str:
    """The confirmed 批量 line: the task, confirmed by this manager, starting at once."""
    if not can_access_site(session, manager.id, int(params["site_id"])):
        raise Forbidden("not your site")
    task = tasks.create_task(session, site_id=int(params["site_id"]), action=params["action"],
                             selection=params["selection"], params=params["params"], actor=who, front="bot",
                             confirmed=True)
    return f"已创建批量任务 {task.id}：{task.item_count} 项，正在执行。发送「批量 进度 {task.id}」查看进度。"

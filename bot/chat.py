"""Route one incoming official-account message to an answer (text) — tenants and managers.

Text from a manager bound by openid goes to the manager commands when it is one (managers may
also use the tenant words); anything else to the tenant chat. Subscribe and scan events carrying
a room scene start a binding, finished by the last four digits of the account's phone; menu clicks
are tenant words by event key. Unknown input gets help.
"""
from __future__ import annotations

import logging
import re

from sqlalchemy.orm import Session

from bot import binding, manager_chat, tenant_chat
from core.errors import MeterpayError

log = logging.getLogger(__name__)

LAST4 = re.compile(r"\d{4}")
WELCOME = "欢迎关注！扫描房间里的二维码即可绑定房间，然后发送「余额」查询。\n" + tenant_chat.HELP


def answer(session: Session, message) -> str | None:
    openid = getattr(message, "source", "") or ""
    mtype = getattr(message, "type", "")
    if mtype == "event":
        mtype = getattr(message, "event", "") or "unknown"
    if mtype == "text":
        text = (message.content or "").strip()[:500]
        if LAST4.fullmatch(text) and binding.pending_room(openid) is not None:
            return _finish_binding(session, openid, text)
        manager = manager_chat.manager_for(session, openid)
        if manager is not None and (manager_chat.is_command(text) or not tenant_chat.handle_known(text)):
            return manager_chat.handle(session, manager, text, msg_key=str(getattr(message, "id", "") or ""))
        return _tenant(session, openid, text)
    if mtype in ("subscribe", "subscribe_scan", "scan"):
        scene = getattr(message, "scene_id", None) or ""
        room_id = binding.room_from_scene(str(scene))
        if room_id is None:
            return WELCOME if mtype != "scan" else tenant_chat.HELP
        try:
            number = binding.room_number(session, room_id)
        except MeterpayError as exc:
            return f"绑定未成功：{exc.message}"
        binding.start(openid, room_id)
        return f"正在绑定房间 {number}：请回复开户手机号的后四位。"
    if mtype == "click":
        word = tenant_chat.MENU_KEYS.get((getattr(message, "key", "") or "").upper())
        return _tenant(session, openid, word) if word else tenant_chat.HELP
    if mtype in ("unsubscribe", "view", "location", "templatesendjobfinish"):
        return None
    return tenant_chat.HELP


def _tenant(session: Session, openid: str, text: str) -> str:
    try:
        return tenant_chat.handle(session, openid, text)
    except MeterpayError as exc:
        session.rollback()
        return f"未成功：{exc.message}"


def _finish_binding(session: Session, openid: str, last4: str) -> str:
    try:
        account = binding.finish(session, openid, last4)
    except MeterpayError as exc:
        session.rollback()
        return f"绑定未成功：{exc.message}"
    return f"已绑定房间 {account.room.number}。\n" + tenant_chat.balance(session, openid, [])

"""Turn a parsed message dict into a wechatpy message or event object (wechatpy's own dispatch).

Parsing itself is done by ``bot.xmlsafe`` (entities off); this only picks the wechatpy class,
exactly as ``wechatpy.parse_message`` does, so the rest of the bot sees wechatpy's types.
"""
from __future__ import annotations

from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage


def to_message(data: dict):
    data = dict(data)
    message_type = (data.get("MsgType") or "").lower()
    if message_type != "event":
        return MESSAGE_TYPES.get(message_type, UnknownMessage)(data)
    event_type = (data.get("Event") or "").lower()
    if event_type == "subscribe" and (data.get("EventKey") or "").startswith("qrscene_"):
        event_type = "subscribe_scan"
        data["Event"] = event_type
        data["EventKey"] = data["EventKey"][len("qrscene_"):]
    return EVENT_TYPES.get(event_type, UnknownMessage)(data)

"""Official-account template message (模板消息) through wechatpy."""
from __future__ import annotations

from wechatpy.exceptions import WeChatClientException

from bot import settings, wechat_api
from bot.channels.base import Channel, DeliveryError, register
from core.models import Notification

TEMPLATE_VARS = {"balance_alarm": "METERPAY_WECHAT_TEMPLATE_BALANCE", "device_alarm": "METERPAY_WECHAT_TEMPLATE_DEVICE",
                 "supply": "METERPAY_WECHAT_TEMPLATE_SUPPLY"}


def template_data(note: Notification) -> dict:
    """first / keyword1..3 / remark, the layout of the common "余额不足提醒" templates."""
    d = note.data or {}
    return {"first": {"value": note.subject},
            "keyword1": {"value": str(d.get("room") or d.get("meter") or "")},
            "keyword2": {"value": str(d.get("balance") or d.get("alarm") or "")},
            "keyword3": {"value": str(d.get("time") or note.created_at.isoformat(timespec="seconds"))},
            "remark": {"value": note.body}}


class WeChatTemplate(Channel):
    type = "wechat_template"
    title = "WeChat official-account template message"
    settings = (("METERPAY_WECHAT_APPID", False), ("METERPAY_WECHAT_SECRET", True),
                ("METERPAY_WECHAT_TEMPLATE_BALANCE", False), ("METERPAY_WECHAT_TEMPLATE_DEVICE", False),
                ("METERPAY_WECHAT_TEMPLATE_SUPPLY", False))

    def send(self, note: Notification) -> str | None:
        template = settings.template_id(TEMPLATE_VARS.get(note.kind, "METERPAY_WECHAT_TEMPLATE_BALANCE")) or \
            settings.template_id("METERPAY_WECHAT_TEMPLATE_BALANCE")
        if not template:
            raise DeliveryError(f"no template id for {note.kind} (METERPAY_WECHAT_TEMPLATE_*)", permanent=True)
        mini = None
        if settings.miniapp_appid() and note.kind in ("balance_alarm", "supply"):
            mini = {"appid": settings.miniapp_appid(), "pagepath": settings.miniapp_recharge_page()}
        try:
            result = wechat_api.official_account().message.send_template(note.recipient, template,
                                                                         template_data(note), mini_program=mini)
        except (WeChatClientException, RuntimeError, OSError) as exc:
            raise DeliveryError(f"template message: {exc}") from None
        return str(result.get("msgid", "")) or None


register(WeChatTemplate)

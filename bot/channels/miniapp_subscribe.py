"""Mini-program subscribe message (订阅消息) through wechatpy's wxa API."""
from __future__ import annotations

from wechatpy.exceptions import WeChatClientException

from bot import settings, wechat_api
from bot.channels.base import Channel, DeliveryError, register
from core.models import Notification

TEMPLATE_VARS = {"balance_alarm": "METERPAY_MINIAPP_TEMPLATE_BALANCE", "supply": "METERPAY_MINIAPP_TEMPLATE_SUPPLY"}


def subscribe_data(note: Notification) -> dict:
    """thing1 room, amount2 balance, thing3 tip (20 characters at most, WeChat's limit for thing)."""
    d = note.data or {}
    return {"thing1": {"value": str(d.get("room") or "")[:20]},
            "amount2": {"value": str(d.get("balance") or "0.00")},
            "thing3": {"value": note.subject[:20]}}


class MiniappSubscribe(Channel):
    type = "miniapp_subscribe"
    title = "WeChat mini-program subscribe message"
    settings = (("METERPAY_MINIAPP_APPID", False), ("METERPAY_MINIAPP_SECRET", True),
                ("METERPAY_MINIAPP_TEMPLATE_BALANCE", False), ("METERPAY_MINIAPP_TEMPLATE_SUPPLY", False))

    def send(self, note: Notification) -> str | None:
        template = settings.template_id(TEMPLATE_VARS.get(note.kind, "METERPAY_MINIAPP_TEMPLATE_BALANCE")) or \
            settings.template_id("METERPAY_MINIAPP_TEMPLATE_BALANCE")
        if not template:
            raise DeliveryError(f"no subscribe template for {note.kind} (METERPAY_MINIAPP_TEMPLATE_*)",
                                permanent=True)
        try:
            wechat_api.miniapp().wxa.send_subscribe_message(note.recipient, template, subscribe_data(note),
                                                            page=settings.miniapp_recharge_page())
        except (WeChatClientException, RuntimeError, OSError) as exc:
            raise DeliveryError(f"subscribe message: {exc}") from None
        return None


register(MiniappSubscribe)

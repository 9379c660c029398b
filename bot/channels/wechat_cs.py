"""Customer-service text message (客服消息): the late answer to a chat command that took long."""
from __future__ import annotations

from wechatpy.exceptions import WeChatClientException

from bot import wechat_api
from bot.channels.base import Channel, DeliveryError, register
from core.models import Notification


class WeChatCustomerService(Channel):
    type = "wechat_cs"
    title = "WeChat customer-service message"
    settings = (("METERPAY_WECHAT_APPID", False), ("METERPAY_WECHAT_SECRET", True))

    def send(self, note: Notification) -> str | None:
        try:
            wechat_api.official_account().message.send_text(note.recipient, note.body)
        except (WeChatClientException, RuntimeError, OSError) as exc:
            raise DeliveryError(f"customer-service message: {exc}") from None
        return None


register(WeChatCustomerService)

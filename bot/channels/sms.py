"""SMS through an HTTP API in the shape common to Chinese SMS gateways (Aliyun-market style).

``POST METERPAY_SMS_URL`` with ``Authorization: APPCODE <METERPAY_SMS_KEY>`` and JSON
``{"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam"}``; success is ``{"Code": "OK",
"BizId": ...}``. The local sandbox (``/sandbox/sms/send``) speaks the same.
"""
from __future__ import annotations

import json

from bot import settings
from bot.channels.base import Channel, DeliveryError, register
from bot.channels.http import post_json
from core.models import Notification


class Sms(Channel):
    type = "sms"
    title = "SMS (HTTP gateway)"
    settings = (("METERPAY_SMS_URL", False), ("METERPAY_SMS_KEY", True), ("METERPAY_SMS_SIGN", False),
                ("METERPAY_SMS_TEMPLATE", False))

    @classmethod
    def configured(cls) -> bool:
        return bool(settings.env("METERPAY_SMS_URL"))

    def send(self, note: Notification) -> str | None:
        url = settings.env("METERPAY_SMS_URL")
        if not url:
            raise DeliveryError("METERPAY_SMS_URL is not set", permanent=True)
        d = note.data or {}
        params = {"room": str(d.get("room") or d.get("meter") or ""), "balance": str(d.get("balance") or ""),
                  "text": note.body[:200]}
        body = post_json(url, {"PhoneNumbers": note.recipient,
                               "SignName": settings.env("METERPAY_SMS_SIGN", "meterpay"),
                               "TemplateCode": settings.env("METERPAY_SMS_TEMPLATE", "SMS_BALANCE"),
                               "TemplateParam": json.dumps(params, ensure_ascii=False)},
                         headers={"Authorization": f"APPCODE {settings.env('METERPAY_SMS_KEY')}"})
        if body.get("Code") != "OK":
            raise DeliveryError(f"sms: {body.get('Code')} {body.get('Message', '')}")
        return str(body.get("BizId") or "") or None


register(Sms)

"""Voice call (TTS) through an HTTP API: ``POST METERPAY_VOICE_URL`` with
``{"CalledNumber", "TtsCode", "TtsParam"}`` and ``Authorization: APPCODE <METERPAY_VOICE_KEY>``;
success is ``{"Code": "OK", "CallId": ...}``. Only the deepest alarm level calls by default."""
from __future__ import annotations

import json

from bot import settings
from bot.channels.base import Channel, DeliveryError, register
from bot.channels.http import post_json
from core.models import Notification


class Voice(Channel):
    type = "voice"
    title = "Voice call (HTTP TTS gateway)"
    settings = (("METERPAY_VOICE_URL", False), ("METERPAY_VOICE_KEY", True), ("METERPAY_VOICE_TEMPLATE", False))

    @classmethod
    def configured(cls) -> bool:
        return bool(settings.env("METERPAY_VOICE_URL"))

    def send(self, note: Notification) -> str | None:
        url = settings.env("METERPAY_VOICE_URL")
        if not url:
            raise DeliveryError("METERPAY_VOICE_URL is not set", permanent=True)
        d = note.data or {}
        body = post_json(url, {"CalledNumber": note.recipient,
                               "TtsCode": settings.env("METERPAY_VOICE_TEMPLATE", "TTS_BALANCE"),
                               "TtsParam": json.dumps({"room": str(d.get("room") or ""),
                                                       "balance": str(d.get("balance") or "")}, ensure_ascii=False)},
                         headers={"Authorization": f"APPCODE {settings.env('METERPAY_VOICE_KEY')}"})
        if body.get("Code") != "OK":
            raise DeliveryError(f"voice: {body.get('Code')} {body.get('Message', '')}")
        return str(body.get("CallId") or "") or None


register(Voice)

"""Room QR codes: each carries a signed binding token; PNG and SVG for managers to print."""
from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from itsdangerous import BadSignature, URLSafeSerializer

from core.config import get_settings
from core.errors import ValidationError

SALT = "meterpay-room-binding"


def binding_token(room_id: int) -> str:
    return URLSafeSerializer(get_settings().secret_key, salt=SALT).dumps({"room": room_id})


def room_from_token(token: str) -> int:
    try:
        data = URLSafeSerializer(get_settings().secret_key, salt=SALT).loads(token)
    except BadSignature:
        raise ValidationError("token: not a valid room binding code", field="token") from None
    room = data.get("room") if isinstance(data, dict) else None
    if not isinstance(room, int):
        raise ValidationError("token: not a valid room binding code", field="token")
    return room


def binding_url(room_id: int) -> str:
    """What the QR code holds: a link the mini-program opens (扫普通链接二维码打开小程序)."""
    return f"{get_settings().public_url.rstrip('/')}/m/bind?token={binding_token(room_id)}"


def png(data: str, box_size: int = 8) -> bytes:
    img = qrcode.make(data, box_size=box_size, border=4)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def svg(data: str) -> bytes:
    img = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage)
    buf = io.BytesIO()
    img.save(buf)
    return buf.getvalue()

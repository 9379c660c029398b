"""``GET /m/bind?token=...``: where a room's QR code points (``meterpay qr room``).

In WeChat the link opens the mini-program (扫普通链接二维码打开小程序), which binds the room with
``POST /api/v1/bindings {"token", "phone_last4"}``. Opened anywhere else (a phone's camera, a
browser, the docs' demo), this page says which room the code is for and how to bind it, Chinese
first. It never shows the tenant's name or phone. A token that is not ours answers 400.
"""
from __future__ import annotations

from flask import Blueprint, render_template_string, request
from sqlalchemy import select

from core.db import new_session
from core.errors import ValidationError
from core.models import Building, Floor, Room, Site
from miniapp_api.qr import room_from_token

bp = Blueprint("miniapp_landing", __name__)

PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.6}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:.1rem .3rem;word-break:break-all}.en{color:#555}
.bad{color:#b00}</style></head><body>
{% if room %}
<h1>{{ site }} · {{ room }}</h1>
<p>用微信扫描这个二维码，会打开缴费小程序并绑定房间 <b>{{ room }}</b>（{{ where }}）。
绑定时请输入开户登记手机号的<b>后四位</b>；绑定后可查余额、用量并在线充值。</p>
<p class="en">Scan this code with WeChat to open the mini-program and bind room <b>{{ room }}</b> ({{ where }}).
Enter the last four digits of the phone number the account was opened with.</p>
<p>小程序（或自己的客户端）调用 / The API call:<br>
<code>POST /api/v1/bindings {"token": "{{ token }}", "phone_last4": "…"}</code></p>
{% else %}
<h1 class="bad">无效的房间二维码</h1>
<p>这个链接不是本系统生成的房间二维码，或已损坏。请联系物业重新获取。</p>
<p class="en">This link is not a room code of this site, or it is damaged. Ask the property office for a new one.</p>
{% endif %}
</body></html>"""


@bp.get("/m/bind")
def bind_page():
    token = request.args.get("token", "")
    info = None
    try:
        room_id = room_from_token(token) if token else None
    except ValidationError:
        room_id = None
    if room_id is not None:
        with new_session() as session:
            info = session.execute(
                select(Site.name, Building.name, Floor.name, Room.number)
                .join(Room, Room.site_id == Site.id).join(Floor, Floor.id == Room.floor_id)
                .join(Building, Building.id == Floor.building_id).where(Room.id == room_id)).first()
    if info is None:
        return render_template_string(PAGE, title="无效的房间二维码 / Not a room code", room=None), 400
    site, building, floor, number = info
    return render_template_string(PAGE, title=f"绑定房间 {number} / Bind room {number}", site=site, room=number,
                                  where=f"{building} {floor}", token=token), 200

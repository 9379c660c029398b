"""Room QR codes for the official account and binding the tenant who scans one.

A room's scene string is ``room:<room id>:<signature>``, the signature an HMAC of the room id
with ``METERPAY_SECRET_KEY`` (so nobody binds a room by guessing ids). Scanning it (subscribe or
scan event) binds the WeChat user to the room's open account: the tenant's ``wechat_openid`` is
set (alarms reach them) and a ``TenantBinding`` row is kept, shared with the mini-program.
"""
from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core import models as core_models
from core.config import get_settings
from core.errors import NotFound, ValidationError
from core.models import Account, Room, Tenant

PREFIX = "room:"


def _sign(room_id: int) -> str:
    return hmac.new(get_settings().secret_key.encode(), f"room:{room_id}".encode(), hashlib.sha256).hexdigest()[:12]


def scene_for(room_id: int) -> str:
    return f"{PREFIX}{room_id}:{_sign(room_id)}"


def room_from_scene(scene: str) -> int | None:
    """The room id of a valid scene string; None when it is not a room scene or is forged."""
    if not scene or not scene.startswith(PREFIX):
        return None
    try:
        _, room_id, sig = scene.split(":")
        rid = int(room_id)
    except ValueError:
        return None
    return rid if hmac.compare_digest(sig, _sign(rid)) else None


def bind(session: Session, openid: str, room_id: int) -> Account:
    """Bind ``openid`` to the open account at a room; binding twice changes nothing."""
    if not openid:
        raise ValidationError("no WeChat user to bind")
    room = session.get(Room, room_id)
    if room is None:
        raise NotFound("this QR code's room no longer exists")
    account = session.scalar(select(Account).where(Account.room_id == room.id, Account.status == "open"))
    if account is None:
        raise NotFound(f"room {room.number} has no open account yet; ask the manager")
    tenant = session.get(Tenant, account.tenant_id)
    changed = tenant.wechat_openid != openid
    tenant.wechat_openid = openid
    binding_model = getattr(core_models, "TenantBinding", None)
    if binding_model is not None and session.scalar(select(binding_model).where(
            binding_model.openid == openid, binding_model.account_id == account.id)) is None:
        session.add(binding_model(openid=openid, account_id=account.id, tenant_id=tenant.id))
        changed = True
    if changed:
        audit.record(session, actor=f"wechat:{openid}", front="bot", action="bind_wechat", site_id=account.site_id,
                     account_id=account.id, room=room.number)
    session.flush()
    return account


def accounts_of(session: Session, openid: str) -> list[Account]:
    """Open accounts this WeChat user may see: their tenant's, and any bound by QR."""
    ids = set(session.scalars(select(Account.id).join(Tenant, Tenant.id == Account.tenant_id)
                              .where(Tenant.wechat_openid == openid, Account.status == "open")).all())
    binding_model = getattr(core_models, "TenantBinding", None)
    if binding_model is not None:
        ids |= set(session.scalars(select(binding_model.account_id).join(Account, Account.id == binding_model.account_id)
                                   .where(binding_model.openid == openid, Account.status == "open")).all())
    if not ids:
        return []
    return list(session.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.id)))


def create_qr(room_id: int) -> dict:
    """Ask WeChat for a permanent QR code of the room's scene; returns ticket and url."""
    from bot import wechat_api
    return wechat_api.official_account().qrcode.create({
        "action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene_for(room_id)}}})

"""Room QR codes for the official account and binding the tenant who scans one.

A room's scene string is ``room:<room id>:<signature>``, the signature an HMAC of the room id
with ``METERPAY_SECRET_KEY`` (so nobody binds a room by guessing ids). Scanning it (subscribe or
scan event) starts a binding; the user then sends the last four digits of the account's phone,
and ``core.sites.selfservice.bind`` (the mini-program's binding service, with its attempt limit)
makes the ``TenantBinding``. The tenant's ``wechat_openid`` is set when empty (alarms reach it).
"""
from __future__ import annotations

import hashlib
import hmac
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import get_settings
from core.errors import NotFound
from core.models import Account, Room, Tenant, TenantBinding

PREFIX = "room:"
PENDING_TTL = 600
_pending: dict[str, tuple[int, float]] = {}
_lock = threading.Lock()


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


def start(openid: str, room_id: int) -> None:
    """Remember, for ``PENDING_TTL`` seconds, that ``openid`` scanned this room's code."""
    if get_settings().redis_url:
        from core.jobs import redis_connection
        redis_connection().set(f"meterpay:wechat:bind:{openid}", str(room_id), ex=PENDING_TTL)
        return
    with _lock:
        _pending[openid] = (room_id, time.monotonic() + PENDING_TTL)


def pending_room(openid: str) -> int | None:
    if get_settings().redis_url:
        from core.jobs import redis_connection
        raw = redis_connection().get(f"meterpay:wechat:bind:{openid}")
        return int(raw) if raw else None
    with _lock:
        found = _pending.get(openid)
        if found is None or found[1] < time.monotonic():
            _pending.pop(openid, None)
            return None
        return found[0]


def finish(session: Session, openid: str, phone_last4: str) -> Account:
    """Bind with the last four phone digits through ``core.sites.selfservice.bind`` (the mini-program's
    service: same proof, same attempt limit); the tenant's official-account openid is kept for alarms."""
    from core.sites import selfservice
    room_id = pending_room(openid)
    if room_id is None:
        raise NotFound("scan the room's QR code first")
    account = selfservice.bind(session, openid, room_id, phone_last4)
    tenant = session.get(Tenant, account.tenant_id)
    if not tenant.wechat_openid:
        tenant.wechat_openid = openid
    forget(openid)
    session.flush()
    return account


def forget(openid: str) -> None:
    if get_settings().redis_url:
        from core.jobs import redis_connection
        redis_connection().delete(f"meterpay:wechat:bind:{openid}")
        return
    with _lock:
        _pending.pop(openid, None)


def room_number(session: Session, room_id: int) -> str:
    room = session.get(Room, room_id)
    if room is None:
        raise NotFound("this QR code's room no longer exists")
    return room.number


def accounts_of(session: Session, openid: str) -> list[Account]:
    """Open accounts this WeChat user may see: their tenant's, and any bound by QR."""
    ids = set(session.scalars(select(Account.id).join(Tenant, Tenant.id == Account.tenant_id)
                              .where(Tenant.wechat_openid == openid, Account.status == "open")).all())
    ids |= set(session.scalars(select(TenantBinding.account_id).join(Account, Account.id == TenantBinding.account_id)
                               .where(TenantBinding.openid == openid, Account.status == "open")).all())
    if not ids:
        return []
    return list(session.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.id)))


def create_qr(room_id: int) -> dict:
    """Ask WeChat for a permanent QR code of the room's scene; returns ticket and url."""
    from bot import wechat_api
    return wechat_api.official_account().qrcode.create({
        "action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene_for(room_id)}}})

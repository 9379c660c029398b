"""Opening and closing accounts (电户), presets, tariff and alarm settings on an account."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, ledger, signals
from core.errors import Conflict, NotFound, ValidationError
from core.ledger import cashdesk
from core.ledger.guards import check_amount, get_account
from core.ledger.money import format_fen
from core.models import Account, AccountPreset, Gateway, Meter, Room, Tenant
from core.models.meter import METER_KINDS
from core.models.tenant import BILLING_MODES
from core.utils import utcnow

SETTLEMENTS = ("refund", "writeoff")


@dataclass(frozen=True)
class MeterSpec:
    """A meter to attach when opening an account; created if its serial is new."""

    serial: str
    kind: str = "electricity"
    profile: str = "acrel-ddsy1352"
    gateway: str | None = None  # a gateway name, or a URL tcp://host:port (created if new)
    address: str = "1"
    ct_ratio: int = 1


@dataclass(frozen=True)
class OpenAccountRequest:
    room_id: int
    tenant_name: str
    tenant_phone: str = ""
    meters: tuple[MeterSpec, ...] = field(default_factory=tuple)
    tariff: str | None = None  # tariff plan name
    billing_mode: str | None = None
    opening_balance_fen: int | None = None
    alarm_levels: list | None = None
    preset: str | None = None


def default_protocol(profile: str) -> str:
    if profile.startswith("dlt645"):
        return "dlt645"
    if profile.startswith("cjt188"):
        return "cjt188"
    return "modbus-rtu"


def find_or_create_gateway(session: Session, site_id: int, ref: str, *, profile: str) -> Gateway:
    ref = ref.strip()
    gw = session.scalar(select(Gateway).where((Gateway.name == ref) | (Gateway.url == ref)))
    if gw is not None:
        if gw.site_id != site_id:
            raise Conflict(f"gateway {ref!r} belongs to another site", field="gateway")
        return gw
    if not ref.startswith(("tcp://", "rtu+tcp://")):
        raise ValidationError(f"gateway: {ref!r} is neither a known gateway name nor a tcp://host:port URL",
                              field="gateway")
    gw = Gateway(site_id=site_id, name=ref, url=ref, protocol=default_protocol(profile))
    session.add(gw)
    session.flush()
    return gw


def attach_meter(session: Session, site_id: int, room_id: int, account_id: int | None, spec: MeterSpec) -> Meter:
    if not spec.serial or not spec.serial.strip():
        raise ValidationError("meter_serial: must not be empty", field="meter_serial")
    if spec.kind not in METER_KINDS:
        raise ValidationError(f"meter_kind: must be one of {', '.join(METER_KINDS)} (got {spec.kind!r})",
                              field="meter_kind")
    if not isinstance(spec.ct_ratio, int) or spec.ct_ratio < 1:
        raise ValidationError("ct_ratio: must be a whole number >= 1", field="ct_ratio")
    meter = session.scalar(select(Meter).where(Meter.serial == spec.serial.strip()))
    if meter is None:
        gw = find_or_create_gateway(session, site_id, spec.gateway, profile=spec.profile) if spec.gateway else None
        meter = Meter(serial=spec.serial.strip(), site_id=site_id, room_id=room_id, kind=spec.kind,
                      profile=spec.profile, gateway_id=gw.id if gw else None, address=str(spec.address),
                      ct_ratio=spec.ct_ratio, account_id=account_id)
        session.add(meter)
    else:
        if meter.site_id != site_id:
            raise Conflict(f"meter {spec.serial} belongs to another site", field="meter_serial")
        if meter.account_id not in (None, account_id):
            raise Conflict(f"meter {spec.serial} is already on account {meter.account_id}", field="meter_serial")
        if meter.status != "active":
            raise Conflict(f"meter {spec.serial} was replaced and is out of service", field="meter_serial")
        meter.account_id = account_id
        meter.room_id = room_id
    session.flush()
    return meter


def open_account(session: Session, req: OpenAccountRequest, *, actor: str = "system",
                 front: str = "system") -> Account:
    """Open an account at a room with its meters, tariff, alarm levels and opening balance, in one go."""
    room = session.get(Room, req.room_id)
    if room is None:
        raise NotFound(f"no room {req.room_id}")
    preset = None
    if req.preset:
        preset = session.scalar(select(AccountPreset).where(AccountPreset.name == req.preset))
        if preset is None:
            raise NotFound(f"no preset named {req.preset!r}", field="preset")
    billing_mode = req.billing_mode or (preset.billing_mode if preset else "prepaid-platform")
    if billing_mode not in BILLING_MODES:
        raise ValidationError(f"billing_mode: must be one of {', '.join(BILLING_MODES)} (got {billing_mode!r})",
                              field="billing_mode")
    if not req.tenant_name or not req.tenant_name.strip():
        raise ValidationError("tenant: name must not be empty", field="tenant")
    if not req.meters:
        raise ValidationError("meters: an account needs at least one meter", field="meters")
    opening = req.opening_balance_fen if req.opening_balance_fen is not None else (
        preset.opening_balance_fen if preset else 0)
    if opening:
        check_amount(opening, field="opening_balance")
    tariff_id = None
    if req.tariff:
        from core.tariffs.store import get_plan
        tariff_id = get_plan(session, req.tariff).id
    elif preset is not None:
        tariff_id = preset.tariff_plan_id
    existing = session.scalar(select(Account).where(Account.room_id == room.id, Account.status == "open"))
    if existing is not None:
        raise Conflict(f"room {room.number} already has open account {existing.id}", field="room")

    tenant = session.scalar(select(Tenant).where(Tenant.site_id == room.site_id,
                                                 Tenant.name == req.tenant_name.strip(),
                                                 Tenant.phone == (req.tenant_phone or "").strip()))
    if tenant is None:
        tenant = Tenant(site_id=room.site_id, name=req.tenant_name.strip(), phone=(req.tenant_phone or "").strip())
        session.add(tenant)
        session.flush()
    account = Account(site_id=room.site_id, room_id=room.id, tenant_id=tenant.id, billing_mode=billing_mode,
                      tariff_plan_id=tariff_id, status="open",
                      alarm_levels=req.alarm_levels if req.alarm_levels is not None else (
                          preset.alarm_levels if preset else None))
    session.add(account)
    session.flush()
    ledger.create_wallet(session, account.id)
    for spec in req.meters:
        attach_meter(session, room.site_id, room.id, account.id, spec)
    if opening:
        opened = cashdesk.opening_balance(session, account.id, opening, actor=actor, front=front)
    audit.record(session, actor=actor, front=front, action="open_account", site_id=room.site_id,
                 account_id=account.id, room=room.number, tenant=tenant.name,
                 meters=[m.serial for m in req.meters], opening_balance=format_fen(opening or 0))
    signals.emit(session, "account_opened", account_id=account.id)
    if opening:
        signals.emit(session, "balance_changed", account_id=account.id, entry_kind="opening", delta_fen=opening,
                     entry_id=opened.entry_id)
    return account


def close_account(session: Session, account_id: int, *, settlement: str = "refund", actor: str = "system",
                  front: str = "system") -> Account:
    """Settle the balance (refund it / collect arrears in cash, or write it off) and close."""
    if settlement not in SETTLEMENTS:
        raise ValidationError(f"settlement: must be one of {', '.join(SETTLEMENTS)}", field="settlement")
    account = get_account(session, account_id)
    balance, settled = cashdesk.settle(session, account.id, settlement=settlement, actor=actor, front=front)
    account.status = "closed"
    account.closed_at = utcnow()
    for meter in account.meters:
        meter.account_id = None
    audit.record(session, actor=actor, front=front, action="close_account", site_id=account.site_id,
                 account_id=account.id, settlement=settlement, settled=format_fen(balance))
    signals.emit(session, "account_closed", account_id=account.id)
    if settled is not None:
        signals.emit(session, "balance_changed", account_id=account.id, entry_kind="settlement", delta_fen=-balance,
                     entry_id=settled.entry_id)
    session.flush()
    return account


def change_tariff(session: Session, account_id: int, tariff: str, *, actor: str = "system",
                  front: str = "system") -> Account:
    from core.tariffs.store import get_plan
    account = get_account(session, account_id)
    plan = get_plan(session, tariff)
    old = account.tariff_plan_id
    account.tariff_plan_id = plan.id
    audit.record(session, actor=actor, front=front, action="change_tariff", site_id=account.site_id,
                 account_id=account.id, old_plan_id=old, new_plan=plan.name)
    session.flush()
    return account


def save_preset(session: Session, name: str, *, tariff: str | None = None, billing_mode: str = "prepaid-platform",
                alarm_levels: list | None = None, opening_balance_fen: int = 0,
                site_id: int | None = None) -> AccountPreset:
    if billing_mode not in BILLING_MODES:
        raise ValidationError(f"billing_mode: must be one of {', '.join(BILLING_MODES)}", field="billing_mode")
    if opening_balance_fen:
        check_amount(opening_balance_fen, field="opening_balance")
    tariff_id = None
    if tariff:
        from core.tariffs.store import get_plan
        tariff_id = get_plan(session, tariff).id
    preset = session.scalar(select(AccountPreset).where(AccountPreset.name == name))
    if preset is None:
        preset = AccountPreset(name=name)
        session.add(preset)
    preset.site_id = site_id
    preset.tariff_plan_id = tariff_id
    preset.billing_mode = billing_mode
    preset.alarm_levels = alarm_levels
    preset.opening_balance_fen = opening_balance_fen
    session.flush()
    return preset

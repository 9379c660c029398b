"""Opening and closing accounts (电户), presets, tariff and alarm settings on an account.

An account has at most one plan per utility (``electricity_plan_id``, ``water_plan_id``); every
plan assigned here goes through ``core.tariffs.store.plan_for``, which takes the site's plan (or
copies a template into the site) and refuses a plan of the wrong unit. Closing bills a closing
reading of every meter to the leaving account and starts a new tier cycle on the meters.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, billing, ledger, signals
from core.db import get_existing
from core.errors import Conflict, NotFound, ValidationError
from core.ledger import cashdesk
from core.ledger.guards import check_amount, get_account
from core.ledger.money import format_fen
from core.models import Account, AccountPreset, Gateway, Meter, Room, Site, TariffPlan, Tenant
from core.models.meter import METER_KINDS, UTILITY_UNIT
from core.models.tenant import BILLING_MODES
from core.tariffs import store as plans
from core.tariffs.usage import parse_quantity
from core.utils import site_tz, utcnow

SETTLEMENTS = ("refund", "writeoff")
# Closing without an entered reading: the last billed reading must be at most this old.
CLOSING_READING_MAX_AGE = timedelta(minutes=15)


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
    tariff: str | None = None  # a plan name, for the utility of its unit (kWh: electricity, m3: water)
    tariffs: Mapping[str, str] = field(default_factory=dict)  # utility -> plan name
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
    named = _named_tariffs(session, room.site_id, req.tariff, req.tariffs)
    # The kinds the account will have (a meter that exists keeps its kind): each plan named must
    # price one of them, in its unit. Checked before anything is written.
    kinds = {session.scalar(select(Meter.kind).where(Meter.serial == spec.serial.strip())) or spec.kind
             for spec in req.meters if spec.serial and spec.serial.strip()}
    for utility, name in named.items():
        if utility not in kinds:
            raise ValidationError(f"tariff: {name!r} prices {utility}, and the account has no {utility} meter",
                                  field="tariff")
        plans.check_unit(plans.find_plan(session, name, room.site_id), utility, name=name)
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
                      status="open", alarm_levels=req.alarm_levels if req.alarm_levels is not None else (
                          preset.alarm_levels if preset else None))
    session.add(account)
    session.flush()
    ledger.create_wallet(session, account.id)
    attached = [attach_meter(session, room.site_id, room.id, account.id, spec) for spec in req.meters]
    kinds = {m.kind for m in attached}
    for utility, name in named.items():
        plan = plans.plan_for(session, name, site_id=room.site_id, utility=utility, actor=actor, front=front)
        _set_plan(account, utility, plan.id)
    if preset is not None:
        for utility in sorted(kinds - set(named)):
            preset_plan = preset.electricity_plan_id if utility == "electricity" else preset.water_plan_id
            if preset_plan is not None:
                plan = plans.plan_for_id(session, preset_plan, site_id=room.site_id, utility=utility, actor=actor,
                                         front=front)
                _set_plan(account, utility, plan.id)
    # A new tenancy starts its own tier cycle on each meter (the cursor stays where it is).
    billing.lock_states(session, [m.id for m in attached])
    billing.start_tenancy(session, [m.id for m in attached])
    if opening:
        opened = cashdesk.opening_balance(session, account.id, opening, actor=actor, front=front)
    audit.record(session, actor=actor, front=front, action="open_account", site_id=room.site_id,
                 account_id=account.id, room=room.number, tenant=tenant.name,
                 meters=[m.serial for m in req.meters], opening_balance=format_fen(opening or 0), tariffs=named)
    signals.emit(session, "account_opened", account_id=account.id)
    if opening:
        signals.emit(session, "balance_changed", account_id=account.id, entry_kind="opening", delta_fen=opening,
                     entry_id=opened.entry_id)
    return account


def _named_tariffs(session: Session, site_id: int, tariff: str | None, tariffs: Mapping[str, str] | None
                   ) -> dict[str, str]:
    """utility -> plan name from a request's ``tariffs`` and its ``tariff`` shorthand (routed to
    the utility of the plan's unit). Unknown names and utilities are refused here."""
    named = {}
    for utility, name in (tariffs or {}).items():
        if utility not in UTILITY_UNIT:
            raise ValidationError(f"tariffs: {utility!r} is not a utility (one of {', '.join(UTILITY_UNIT)})",
                                  field="tariff")
        if name and name.strip():
            named[utility] = name.strip()
    if tariff and tariff.strip():
        utility = plans.utility_of(plans.find_plan(session, tariff, site_id))
        if named.get(utility, tariff.strip()) != tariff.strip():
            raise ValidationError(f"tariff: {tariff!r} and {named[utility]!r} are both named for {utility}",
                                  field="tariff")
        named[utility] = tariff.strip()
    return named


def _set_plan(account: Account, utility: str, plan_id: int | None) -> None:
    if utility == "electricity":
        account.electricity_plan_id = plan_id
    else:
        account.water_plan_id = plan_id


def close_account(session: Session, account_id: int, *, settlement: str = "refund",
                  closing_totals: Mapping[str, Decimal | str] | None = None, at: datetime | None = None,
                  actor: str = "system", front: str = "system") -> Account:
    """Bill every meter's usage up to a closing reading to this account, settle the balance
    (refund it / collect arrears in cash, or write it off) and close; the meters start a new
    tier cycle for whoever comes next.

    ``closing_totals``: meter serial -> register total read at ``at`` (default now), billed as a
    ``manual`` reading. A meter without one needs a billed reading at most
    ``CLOSING_READING_MAX_AGE`` old (or none ever: nothing to bill). Raises ``ValidationError``
    (and changes nothing) when a reading is missing, stale, below the last one or not after it,
    or when a meter has no plan for its utility (its usage since the last priced reading would
    go unbilled); ``Conflict`` if billing does not accept a closing reading. The cursors are
    locked before the wallet, as billing locks them, so a poll waiting behind the close bills the
    next interval to nobody (the meter is on no account any more) instead of to this account.
    """
    if settlement not in SETTLEMENTS:
        raise ValidationError(f"settlement: must be one of {', '.join(SETTLEMENTS)}", field="settlement")
    account = get_account(session, account_id)
    at = at or utcnow()
    if at.tzinfo is None:
        raise ValidationError("at: must be timezone-aware", field="at")
    meters = [m for m in account.meters if m.status == "active"]
    given = {str(k).strip(): v for k, v in (closing_totals or {}).items() if v is not None and str(v).strip() != ""}
    unknown = sorted(set(given) - {m.serial for m in meters})
    if unknown:
        raise ValidationError(f"closing_totals: {unknown[0]} is not a meter of this account", field="closing_totals")
    totals = {serial: parse_quantity(value, "closing_totals") for serial, value in given.items()}
    with session.begin_nested():
        states = billing.lock_states(session, [m.id for m in meters])
        rows = _closing_readings(session, account, meters, states, totals, at)
        if rows:
            result = billing.ingest_batch(session, rows, actor=actor, front=front)
            for m, r in zip([m for m in meters if m.serial in totals], result.results):
                if r.status != "accepted" or r.late:
                    status = "late" if r.late else r.status
                    raise Conflict(f"closing reading of {m.serial}: {status} ({r.reason})", field="closing_totals")
        billing.start_tenancy(session, [m.id for m in meters])
    balance, settled = cashdesk.settle(session, account.id, settlement=settlement, actor=actor, front=front)
    account.status = "closed"
    account.closed_at = utcnow()
    for meter in account.meters:
        meter.account_id = None
    audit.record(session, actor=actor, front=front, action="close_account", site_id=account.site_id,
                 account_id=account.id, settlement=settlement, settled=format_fen(balance),
                 closing_totals={s: str(t) for s, t in totals.items()})
    signals.emit(session, "account_closed", account_id=account.id)
    if settled is not None:
        signals.emit(session, "balance_changed", account_id=account.id, entry_kind="settlement", delta_fen=-balance,
                     entry_id=settled.entry_id)
    session.flush()
    return account


def _closing_readings(session: Session, account: Account, meters: list[Meter], states: dict[int, dict],
                      totals: dict[str, Decimal], at: datetime) -> list[billing.RawReading]:
    """The closing readings to bill (entered ones), after checking every meter can be closed."""
    tz = site_tz(get_existing(session, Site, account.site_id).timezone)
    rows = []
    for m in meters:
        st = states[m.id]
        last_at, last_total, seen = st["last_taken_at"], st["last_total"], st["seen_until"]
        plan = account.plan_of(m.kind)
        if plan is None or plan.unit != UTILITY_UNIT.get(m.kind):
            # Unpriced: its readings wait for a plan. Usage it holds (or a closing total above
            # its last billed reading) would go unbilled once the meter leaves the account.
            held = seen is not None and last_at is not None and seen > last_at
            more = m.serial in totals and last_total is not None and totals[m.serial] != last_total
            if held or more:
                raise ValidationError(f"tariff: meter {m.serial} has no {m.kind} plan, so its usage since "
                                      f"{last_at.astimezone(tz):%Y-%m-%d %H:%M} is not billed yet; assign a "
                                      f"{m.kind} plan first", field="tariff")
        if m.serial in totals:
            total = totals[m.serial]
            if last_at is not None and at <= last_at:
                raise ValidationError(f"closing_totals: meter {m.serial} was read after the closing time, at "
                                      f"{last_at.astimezone(tz):%Y-%m-%d %H:%M}", field="closing_totals")
            if last_total is not None and total < last_total:
                raise ValidationError(f"closing_totals: {total} for meter {m.serial} is below its last reading "
                                      f"{last_total}", field="closing_totals")
            rows.append(billing.RawReading(m.id, at, total, None, "manual"))
        elif last_at is not None and at - last_at > CLOSING_READING_MAX_AGE:
            raise ValidationError(f"closing_totals: meter {m.serial} was last read at "
                                  f"{last_at.astimezone(tz):%Y-%m-%d %H:%M}; enter its closing reading",
                                  field="closing_totals")
    return rows


def change_tariff(session: Session, account_id: int, tariff: str, *, utility: str | None = None,
                  actor: str = "system", front: str = "system") -> Account:
    """Price the account's meters of ``utility`` (default: the utility of the plan's unit) with
    plan ``tariff`` from their next reading on. Refused (``ValidationError``, field ``tariff``)
    for a plan of another unit, or an account without an active meter of that utility."""
    account = get_account(session, account_id)
    found = plans.find_plan(session, tariff, account.site_id)
    utility = utility or plans.utility_of(found)
    plans.check_unit(found, utility, name=tariff)
    if not any(m.kind == utility and m.status == "active" for m in account.meters):
        raise ValidationError(f"tariff: account {account.id} has no {utility} meter", field="tariff")
    plan = plans.plan_for(session, tariff, site_id=account.site_id, utility=utility, actor=actor, front=front)
    old = account.plan_id_for(utility)
    _set_plan(account, utility, plan.id)
    audit.record(session, actor=actor, front=front, action="change_tariff", site_id=account.site_id,
                 account_id=account.id, utility=utility, old_plan_id=old, new_plan=plan.name, new_plan_id=plan.id)
    session.flush()
    return account


def save_preset(session: Session, name: str, *, tariffs: Mapping[str, str] | None = None, tariff: str | None = None,
                billing_mode: str = "prepaid-platform", alarm_levels: list | None = None,
                opening_balance_fen: int = 0, site_id: int | None = None) -> AccountPreset:
    """Save (or replace) preset ``name``: a plan per utility (``tariffs``, or ``tariff`` for the
    utility of its unit), billing mode, alarm levels, opening balance. A preset of every site
    (``site_id`` None) may name only templates; a site's preset, the site's plans or templates."""
    if billing_mode not in BILLING_MODES:
        raise ValidationError(f"billing_mode: must be one of {', '.join(BILLING_MODES)}", field="billing_mode")
    if opening_balance_fen:
        check_amount(opening_balance_fen, field="opening_balance")
    def find(name: str):
        try:
            return plans.find_plan(session, name, site_id)
        except NotFound:
            if site_id is None and session.scalar(select(TariffPlan.id).where(TariffPlan.name == name.strip())):
                raise ValidationError(f"tariff: {name!r} is a site's plan; a preset of every site may name only "
                                      "templates", field="tariff") from None
            raise

    named = {}
    for utility, plan_name in (tariffs or {}).items():
        if plan_name and plan_name.strip():
            named[utility] = plans.check_unit(find(plan_name), utility, name=plan_name)
    if tariff and tariff.strip():
        plan = find(tariff)
        utility = plans.utility_of(plan)
        if utility in named and named[utility].id != plan.id:
            raise ValidationError(f"tariff: {tariff!r} and {named[utility].name!r} are both named for {utility}",
                                  field="tariff")
        named[utility] = plan
    preset = session.scalar(select(AccountPreset).where(AccountPreset.name == name))
    if preset is None:
        preset = AccountPreset(name=name)
        session.add(preset)
    preset.site_id = site_id
    preset.electricity_plan_id = named["electricity"].id if "electricity" in named else None
    preset.water_plan_id = named["water"].id if "water" in named else None
    preset.billing_mode = billing_mode
    preset.alarm_levels = alarm_levels
    preset.opening_balance_fen = opening_balance_fen
    session.flush()
    return preset

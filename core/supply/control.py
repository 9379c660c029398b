"""Cutting and restoring supply by hand: one service for the chat command, the web page and batch.

Trip = relay off on electricity meters, valve closed on water meters; restore = the opposite.
Each goes through the command outbox (core.supply.commands) and the audit log. Automatic control
(cut at zero, restore on recharge, friendly hours) builds on these in core/supply_auto.py.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from core import audit
from core.errors import NotFound, ValidationError
from core.ledger.guards import get_account
from core.models import Meter, MeterCommand
from core.supply import commands


def _supply_kind(meter: Meter, on: bool) -> str:
    if meter.kind == "water":
        return "valve_open" if on else "valve_close"
    return "relay_on" if on else "relay_off"


def switch_meter(session: Session, meter_id: int, on: bool, *, actor: str = "system", front: str = "system",
                 reason: str = "manual", key: str | None = None) -> MeterCommand:
    meter = session.get(Meter, meter_id) if isinstance(meter_id, int) else None
    if meter is None:
        raise NotFound(f"no meter {meter_id}")
    kind = _supply_kind(meter, on)
    return commands.request(session, meter.id, kind, {"reason": reason}, key=key, actor=actor, front=front)


def trip(session: Session, account_id: int, *, actor: str = "system", front: str = "system",
         reason: str = "manual", key: str | None = None) -> list[MeterCommand]:
    """Cut supply on every meter of an account (relay off / valve closed)."""
    return _switch_account(session, account_id, False, actor=actor, front=front, reason=reason, key=key)


def restore(session: Session, account_id: int, *, actor: str = "system", front: str = "system",
            reason: str = "manual", key: str | None = None) -> list[MeterCommand]:
    """Restore supply on every meter of an account (relay on / valve open)."""
    return _switch_account(session, account_id, True, actor=actor, front=front, reason=reason, key=key)


def _switch_account(session: Session, account_id: int, on: bool, *, actor: str, front: str, reason: str,
                    key: str | None) -> list[MeterCommand]:
    account = get_account(session, account_id, must_be_open=False)
    meters = [m for m in account.meters if m.status == "active"]
    if not meters:
        raise ValidationError(f"account {account_id} has no meter in service")
    cmds = [switch_meter(session, m.id, on, actor=actor, front=front, reason=reason,
                         key=f"{key}:{m.id}" if key else None) for m in meters]
    audit.record(session, actor=actor, front=front, action="restore" if on else "trip", site_id=account.site_id,
                 account_id=account.id, reason=reason, commands=[c.id for c in cmds])
    return cmds


def set_keep_power(session: Session, account_id: int, on: bool, *, actor: str = "system",
                   front: str = "system") -> None:
    """Keep-power (保电): automatic control never cuts this account while it is on."""
    account = get_account(session, account_id)
    account.keep_power = on
    for m in account.meters:
        m.keep_power = on
        if m.profile.startswith("dlt645") and m.status == "active":
            # DL/T 645 meters also hold keep-power themselves (1CH 3A/3B).
            commands.request(session, m.id, "keep_power_on" if on else "keep_power_off", {}, actor=actor, front=front)
    audit.record(session, actor=actor, front=front, action="keep_power_on" if on else "keep_power_off",
                 site_id=account.site_id, account_id=account.id)
    session.flush()


def set_alarm_levels(session: Session, account_id: int, levels: list[dict], *, actor: str = "system",
                     front: str = "system") -> None:
    """Three levels [{"amount_fen", "times", "every_minutes"}], highest amount first."""
    account = get_account(session, account_id)
    if not isinstance(levels, list) or not 1 <= len(levels) <= 3:
        raise ValidationError("alarm levels: give one to three levels", field="alarm_levels")
    clean = []
    for i, lvl in enumerate(levels):
        try:
            amount, times, every = int(lvl["amount_fen"]), int(lvl.get("times", 1)), int(lvl.get("every_minutes", 0))
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"alarm level {i + 1}: needs amount_fen, times, every_minutes",
                                  field="alarm_levels") from None
        if times < 1 or times > 10 or every < 0:
            raise ValidationError(f"alarm level {i + 1}: times 1-10, every_minutes >= 0", field="alarm_levels")
        clean.append({"amount_fen": amount, "times": times, "every_minutes": every})
    amounts = [c["amount_fen"] for c in clean]
    if amounts != sorted(amounts, reverse=True) or len(set(amounts)) != len(amounts):
        raise ValidationError("alarm levels: amounts must go down from level 1 to level 3", field="alarm_levels")
    account.alarm_levels = clean
    audit.record(session, actor=actor, front=front, action="set_alarm_levels", site_id=account.site_id,
                 account_id=account.id, levels=clean)
    session.flush()

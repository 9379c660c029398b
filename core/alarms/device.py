"""Device alarms for managers: meter offline, consumption while tripped, relay/valve state mismatch, tamper.

- ``meter_online_changed`` (from the poller) with ``online=False`` → "meter offline", once per
  offline episode (keyed by the time the meter was last seen).
- ``reading_billed`` → if the meter was commanded off/closed (a confirmed trip) and its register
  still advanced between two readings taken after that → a ``relay_mismatch`` meter event,
  once per trip command; if the profile reports tamper (``meter.live["tamper"]``) → a
  ``tamper`` event, once a day.
- ``state_mismatch`` (called by ``core.supply.enforce`` after a poll) → the relay/valve reads the
  other state than the one commanded: a ``relay_mismatch`` meter event (detail desired, observed,
  command_id), once per commanded state (keyed by the command that set it).

Each alarm goes to the site's managers bound to WeChat and the site webhook
(``core.alarms.notifications.notify_site_managers``). Registered by ``core.signals``.
"""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock, signals
from core.alarms import notifications
from core.db import session_scope
from core.models import Meter, MeterCommand, MeterEvent, Reading, Room

log = logging.getLogger(__name__)

# Register movement below this is noise (one count of the last digit), not consumption.
MISMATCH_TOLERANCE = Decimal("0.01")


@signals.on("meter_online_changed")
def on_meter_online_changed(meter_id: int, online: bool, **_payload) -> None:
    if online:
        return
    with session_scope() as session:
        meter_offline(session, meter_id)


@signals.on("reading_billed")
def on_reading_billed(meter_id: int, **_payload) -> None:
    with session_scope() as session:
        check_reading(session, meter_id)


@signals.handles_many(on_reading_billed)
def on_readings_billed(payloads: list[dict]) -> None:
    """A poll round's readings at once: one query finds the meters that can raise anything (commanded
    off or closed, or reporting tamper); only those are looked at, each in its own transaction."""
    ids = sorted({p["meter_id"] for p in payloads})
    suspects: list[int] = []
    for k in range(0, len(ids), 5000):
        with session_scope() as session:
            rows = session.execute(select(Meter.id, Meter.commanded_state, Meter.live)
                                   .where(Meter.id.in_(ids[k:k + 5000])))
            suspects.extend(mid for mid, commanded, live in rows
                            if commanded in ("off", "closed") or (live or {}).get("tamper"))
    for mid in suspects:
        try:
            with session_scope() as session:
                check_reading(session, mid)
        except Exception:
            log.exception("device alarms after a reading of meter %s failed", mid)


def meter_offline(session: Session, meter_id: int) -> bool:
    meter = session.get(Meter, meter_id)
    if meter is None or meter.online:
        return False
    seen = meter.last_seen_at.isoformat(timespec="seconds") if meter.last_seen_at else "never"
    return _alarm(session, meter, f"device:offline:{meter.id}:{seen}", "电表离线",
                  f"{_where(session, meter)} 表 {meter.serial} 离线（最后通讯 {seen}）。", "offline")


def check_reading(session: Session, meter_id: int, *, now: datetime | None = None) -> list[str]:
    """Look at a meter after a reading; returns the alarm kinds raised."""
    meter = session.get(Meter, meter_id)
    if meter is None:
        return []
    raised = []
    if _consuming_while_tripped(session, meter):
        raised.append("relay_mismatch")
    if (meter.live or {}).get("tamper"):
        day = (now or clock.now()).date().isoformat()
        if _alarm(session, meter, f"device:tamper:{meter.id}:{day}", "电表防窃电告警",
                  f"{_where(session, meter)} 表 {meter.serial} 报告开盖/窃电（tamper）。", "tamper",
                  record_event=True):
            raised.append("tamper")
    return raised


def _consuming_while_tripped(session: Session, meter: Meter) -> bool:
    if meter.commanded_state not in ("off", "closed"):
        return False
    cut = session.scalar(select(MeterCommand).where(
        MeterCommand.meter_id == meter.id, MeterCommand.kind.in_(("relay_off", "valve_close")),
        MeterCommand.state == "confirmed").order_by(MeterCommand.id.desc()).limit(1))
    if cut is None or cut.finished_at is None:
        return False
    later = session.scalars(select(MeterCommand.id).where(
        MeterCommand.meter_id == meter.id, MeterCommand.id > cut.id,
        MeterCommand.kind.in_(("relay_on", "valve_open")))).first()
    if later is not None:
        return False
    readings = session.scalars(select(Reading).where(Reading.meter_id == meter.id, Reading.status == "ok",
                                                     Reading.taken_at > cut.finished_at)
                               .order_by(Reading.taken_at.desc()).limit(2)).all()
    if len(readings) < 2 or readings[0].total - readings[1].total <= MISMATCH_TOLERANCE:
        return False
    used = readings[0].total - readings[1].total
    return _alarm(session, meter, f"device:relay_mismatch:{meter.id}:{cut.id}", "断电后仍在用电",
                  f"{_where(session, meter)} 表 {meter.serial} 已断电（指令 {cut.id}）但仍走字 {used}。",
                  "relay_mismatch", record_event=True, detail={"command_id": cut.id, "used": str(used)})


_STATE_WORDS = {("electricity", "off"): "拉闸", ("electricity", "on"): "合闸", ("water", "off"): "关阀",
                ("water", "on"): "开阀", ("water", "abnormal"): "阀门异常", ("electricity", "abnormal"): "异常"}


def state_mismatch(session: Session, meter: Meter, desired: str, observed: str, base_id: int) -> bool:
    """The poll found the relay/valve ``observed`` ("on", "off", "abnormal") while ``desired`` ("on",
    "off") is what was commanded (command ``base_id``): a ``relay_mismatch`` alarm, once per base
    command (core.supply.enforce re-issues the command). Returns False when already raised."""
    words = {k: _STATE_WORDS.get((meter.kind, k), k) for k in (desired, observed)}
    return _alarm(session, meter, f"device:relay_mismatch:{meter.id}:state:{base_id}", "电表状态与下发不符",
                  f"{_where(session, meter)} 表 {meter.serial} 应为{words[desired]}，"
                  f"实际为{words[observed]}，将重新下发。",
                  "relay_mismatch", record_event=True,
                  detail={"desired": desired, "observed": observed, "command_id": base_id})


def _alarm(session: Session, meter: Meter, cause: str, subject: str, body: str, kind: str, *,
           record_event: bool = False, detail: dict | None = None) -> bool:
    """Raise one alarm once per cause; returns False when this cause was raised before."""
    if _already(session, meter, cause, kind):
        return False
    if record_event:
        session.add(MeterEvent(meter_id=meter.id, kind=kind, detail={"cause": cause, **(detail or {})}))
    notifications.notify_site_managers(session, meter.site_id, cause=cause, kind="device_alarm", subject=subject,
                                       body=body, data={"meter": meter.serial, "alarm": kind})
    session.flush()
    return True


def _already(session: Session, meter: Meter, cause: str, kind: str) -> bool:
    from core.models import Notification
    if session.scalar(select(Notification.id).where(Notification.key.like(f"{cause}:%")).limit(1)) is not None:
        return True
    events = session.scalars(select(MeterEvent).where(MeterEvent.meter_id == meter.id, MeterEvent.kind == kind)
                             .order_by(MeterEvent.id.desc()).limit(20))
    return any((e.detail or {}).get("cause") == cause for e in events)


def _where(session: Session, meter: Meter) -> str:
    room = session.get(Room, meter.room_id) if meter.room_id else None
    return f"房间 {room.number}" if room else "未分配房间"

"""Honest availability (Home Assistant's coordinator habit): a meter is online while it answers,
offline after N failed reads in a row (METERPAY_OFFLINE_AFTER), and each flip is a MeterEvent
with its time plus a ``meter_online_changed`` signal. A failed read never leaves a stale value
looking live: Meter.live keeps the last good values and ``last_seen_at`` says when they were read.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from core import signals
from core.models import Meter, MeterEvent
from hardware import settings
from hardware.values import MeterValues

log = logging.getLogger(__name__)


def record_success(session: Session, meter: Meter, values: MeterValues | None, at: datetime) -> None:
    meter.consecutive_failures = 0
    meter.last_seen_at = at
    if values is not None:
        apply_values(meter, values, at)
    if not meter.online:
        meter.online = True
        session.add(MeterEvent(meter_id=meter.id, kind="online", at=at, detail={}))
        signals.emit(session, "meter_online_changed", meter_id=meter.id, online=True)
        log.info("meter %s is online", meter.serial)


def record_failure(session: Session, meter: Meter, error: str, at: datetime) -> None:
    meter.consecutive_failures = (meter.consecutive_failures or 0) + 1
    limit = settings.offline_after()
    if meter.consecutive_failures < limit:
        return
    flipped = meter.online
    never_seen = meter.last_seen_at is None and meter.consecutive_failures == limit
    if flipped or never_seen:
        meter.online = False
        session.add(MeterEvent(meter_id=meter.id, kind="offline", at=at,
                               detail={"failures": meter.consecutive_failures, "error": error[:500]}))
        if flipped:
            signals.emit(session, "meter_online_changed", meter_id=meter.id, online=False)
        log.warning("meter %s is offline after %s failed reads: %s", meter.serial, meter.consecutive_failures, error)


def apply_values(meter: Meter, values: MeterValues, at: datetime | None = None) -> None:
    """Mirror what the meter said: live values, relay/valve, meter-side balance (with the time it was
    read: what a prepaid-meter account shows) and purchase count."""
    live = values.to_json()
    if live:
        merged = dict(meter.live or {})
        merged.update(live)
        meter.live = merged
    if values.relay is not None:
        meter.relay_state = values.relay
    if values.valve is not None:
        meter.valve_state = values.valve
    if values.remaining_amount is not None:
        meter.remaining_fen = values.remaining_fen
        if at is not None:
            meter.remaining_read_at = at
    if values.purchase_count is not None:
        meter.purchase_count = values.purchase_count

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


def record_success(session: Session, meter: Meter, values: MeterValues | None, at: datetime, *,
                   observed_at: datetime | None = None) -> set[str]:
    """The meter answered at ``at``; mirror ``values`` read at ``observed_at`` (default ``at``).
    Returns the groups the values replaced (see ``apply_values``)."""
    meter.consecutive_failures = 0
    meter.last_seen_at = at if meter.last_seen_at is None else max(meter.last_seen_at, at)
    applied: set[str] = set()
    if values is not None:
        applied = apply_values(meter, values, observed_at or at, shown_at=at)
    if not meter.online:
        meter.online = True
        session.add(MeterEvent(meter_id=meter.id, kind="online", at=at, detail={}))
        signals.emit(session, "meter_online_changed", meter_id=meter.id, online=True)
        log.info("meter %s is online", meter.serial)
    return applied


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


def _newer(seen: datetime | None, observed_at: datetime | None) -> bool:
    return observed_at is None or seen is None or observed_at >= seen


def apply_values(meter: Meter, values: MeterValues, observed_at: datetime | None = None, *,
                 shown_at: datetime | None = None) -> set[str]:
    """Mirror what the meter said, group by group, unless that group was read more recently.

    Groups: ``supply`` (relay, valve), ``prepaid`` (remaining amount, purchase count), ``live``
    (live values). Each has the time it was last read (``Meter.*_observed_at``): values read at
    ``observed_at`` replace a group only when it is None or not older than the stored time, which
    then becomes ``observed_at`` (so a poll round that read the meter before a confirmed relay
    command, stored after it, changes nothing of the relay). ``observed_at=None`` applies
    unconditionally and leaves the stored times alone. ``shown_at`` (default ``observed_at``) is the
    remaining amount's read time as accounts show it. Returns the groups applied.
    """
    applied: set[str] = set()
    live = values.to_json()
    if live and _newer(meter.live_observed_at, observed_at):
        merged = dict(meter.live or {})
        merged.update(live)
        meter.live = merged
        meter.live_observed_at = observed_at or meter.live_observed_at
        applied.add("live")
    if (values.relay is not None or values.valve is not None) and _newer(meter.supply_observed_at, observed_at):
        if values.relay is not None:
            meter.relay_state = values.relay
        if values.valve is not None:
            meter.valve_state = values.valve
        meter.supply_observed_at = observed_at or meter.supply_observed_at
        applied.add("supply")
    if (values.remaining_amount is not None or values.purchase_count is not None) \
            and _newer(meter.prepaid_observed_at, observed_at):
        if values.remaining_amount is not None:
            meter.remaining_fen = values.remaining_fen
            read_at = shown_at or observed_at
            if read_at is not None:
                meter.remaining_read_at = read_at
        if values.purchase_count is not None:
            meter.purchase_count = values.purchase_count
        meter.prepaid_observed_at = observed_at or meter.prepaid_observed_at
        applied.add("prepaid")
    return applied

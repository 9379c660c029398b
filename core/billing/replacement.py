"""Meter replacement: bill the old meter up to its final reading, close it, start the new one."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.billing.ingest import IngestResult, ingest
from core.errors import Conflict, NotFound, ValidationError
from core.models import Meter, MeterEvent
from core.models.billing import MeterBillingState
from core.tariffs.usage import parse_quantity
from core.utils import utcnow


@dataclass(frozen=True)
class ReplacementResult:
    old_meter_id: int
    new_meter_id: int
    final: IngestResult  # the old meter's final reading (bills the last interval)
    first: IngestResult  # the new meter's first reading (its baseline)


def replace_meter(session: Session, old_meter_id: int, final_total, new_serial: str, new_first_total, *,
                  at: datetime | None = None, new_address: str | None = None, new_ct_ratio: int | None = None,
                  new_profile: str | None = None, actor: str = "system", front: str = "system") -> ReplacementResult:
    """Swap a meter. The old one is billed up to ``final_total`` and closed (later readings of it are
    anomalies); the new one, on the same account, room and gateway, starts at ``new_first_total``.
    Nothing changes if any input is wrong."""
    at = at or utcnow()
    if at.tzinfo is None:
        raise ValidationError("at: must be timezone-aware", field="at")
    final_total = parse_quantity(final_total, "final_total")
    new_first_total = parse_quantity(new_first_total, "new_first_total")
    new_serial = (new_serial or "").strip()
    if not new_serial:
        raise ValidationError("new_serial: must not be empty", field="new_serial")
    old = session.get(Meter, old_meter_id, with_for_update=True)
    if old is None:
        raise NotFound(f"no meter {old_meter_id}")
    if old.status != "active":
        raise Conflict(f"meter {old.serial} was already replaced", field="meter")
    if session.scalar(select(Meter.id).where(Meter.serial == new_serial)) is not None:
        raise Conflict(f"new_serial: a meter {new_serial!r} already exists", field="new_serial")
    if new_ct_ratio is not None and (not isinstance(new_ct_ratio, int) or new_ct_ratio < 1):
        raise ValidationError("new_ct_ratio: must be a whole number >= 1", field="new_ct_ratio")
    state = session.get(MeterBillingState, old.id)
    if state is not None and state.last_total is not None:
        if final_total < Decimal(state.last_total):
            raise ValidationError(f"final_total: {final_total} is below the meter's last reading "
                                  f"{Decimal(state.last_total)}", field="final_total")
        if state.last_taken_at is not None and at <= state.last_taken_at:
            raise ValidationError("at: the swap must come after the meter's last billed reading", field="at")

    final = ingest(session, old.id, at, final_total, source="manual")
    if final.status not in ("accepted",):
        raise Conflict(f"final reading was not accepted ({final.status}: {final.reason})", field="final_total")
    session.execute(update(MeterBillingState).where(MeterBillingState.meter_id == old.id).values(closed=True))
    new = Meter(serial=new_serial, site_id=old.site_id, room_id=old.room_id, account_id=old.account_id,
                gateway_id=old.gateway_id, kind=old.kind, profile=new_profile or old.profile,
                address=str(new_address) if new_address is not None else old.address,
                ct_ratio=new_ct_ratio or old.ct_ratio, keep_power=old.keep_power, installed_at=at)
    session.add(new)
    old.status = "replaced"
    old.replaced_at = at
    old.account_id = None
    session.flush()
    first = ingest(session, new.id, at, new_first_total, source="manual")
    session.add_all([
        MeterEvent(meter_id=old.id, kind="replaced", at=at,
                   detail={"final_total": str(final_total), "new_meter_id": new.id, "new_serial": new.serial}),
        MeterEvent(meter_id=new.id, kind="installed", at=at,
                   detail={"first_total": str(new_first_total), "old_meter_id": old.id, "old_serial": old.serial}),
    ])
    audit.record(session, actor=actor, front=front, action="replace_meter", site_id=old.site_id,
                 account_id=new.account_id, meter_id=old.id, old_serial=old.serial, new_serial=new.serial,
                 final_total=str(final_total), first_total=str(new_first_total), billed=final.billed_fen)
    session.flush()
    return ReplacementResult(old.id, new.id, final, first)

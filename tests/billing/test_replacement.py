"""Meter replacement: close the old meter on its final reading, start the new one on its first."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from core import ledger
from core.billing import ingest, replace_meter
from core.errors import Conflict, ValidationError
from core.models import Meter, MeterEvent
from tests.billing.conftest import at, kwh


def test_the_old_meter_is_billed_to_its_final_reading_and_the_new_one_starts_fresh(session, billed_account):
    acct, old = billed_account()
    ingest(session, old.id, at("2026-07-01 00:00"), kwh("9990.00"))
    swap = replace_meter(session, old.id, kwh("9995.00"), "NEW-0001", kwh("0.50"), at=at("2026-07-01 10:00"))
    after = ingest(session, swap.new_meter_id, at("2026-07-01 11:00"), kwh("10.50"))
    late_old = ingest(session, old.id, at("2026-07-01 12:00"), kwh("9999.00"))
    session.commit()
    assert swap.final.billed_fen == 300 and swap.first.status == "accepted"
    assert after.billed_fen == 600  # 10 kWh on the new meter, not 10.50 - 9995
    assert late_old.status == "anomaly"
    new = session.get(Meter, swap.new_meter_id)
    assert (new.account_id, new.room_id, new.ct_ratio) == (acct.id, old.room_id, old.ct_ratio)
    assert session.get(Meter, old.id).status == "replaced"
    kinds = {e.kind for e in session.scalars(select(MeterEvent))}
    assert {"replaced", "installed"} <= kinds
    assert ledger.account_balance(session, acct.id) == 100_000 - 900


def test_a_final_reading_below_the_last_one_is_refused_and_changes_nothing(session, billed_account):
    acct, old = billed_account()
    ingest(session, old.id, at("2026-07-01 00:00"), kwh("100"))
    session.commit()
    with pytest.raises(ValidationError, match="final_total"):
        replace_meter(session, old.id, kwh("99"), "NEW-0002", kwh("0"), at=at("2026-07-01 10:00"))
    session.rollback()
    assert session.get(Meter, old.id).status == "active"
    assert session.scalar(select(Meter).where(Meter.serial == "NEW-0002")) is None


def test_a_new_serial_already_in_use_is_refused(session, billed_account):
    _, old = billed_account()
    _, other = billed_account()
    with pytest.raises(Conflict, match="new_serial"):
        replace_meter(session, old.id, kwh("1"), other.serial, kwh("0"), at=at("2026-07-01 10:00"))

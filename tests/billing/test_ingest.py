"""Billing single readings as the poller delivers them."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from core import ledger, signals
from core.billing import ingest
from core.ledger.check import validate
from core.models import JournalEntry, MeterEvent, Reading
from core.models.billing import BilledUsage
from tests.billing.conftest import BEIJING_TIERS, at, kwh


def test_the_first_reading_is_the_baseline_and_bills_nothing(session, billed_account):
    acct, meter = billed_account()
    res = ingest(session, meter.id, at("2026-07-01 00:00"), kwh("1000.00"))
    session.commit()
    assert (res.status, res.billed_fen) == ("accepted", 0)
    assert ledger.account_balance(session, acct.id) == 100_000


def test_each_reading_deducts_the_priced_interval_from_the_wallet(session, billed_account):
    acct, meter = billed_account()
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("1000.00"))
    res = ingest(session, meter.id, at("2026-07-01 01:00"), kwh("1010.00"))
    session.commit()
    assert (res.status, res.billed_fen) == ("accepted", 600)
    assert ledger.account_balance(session, acct.id) == 100_000 - 600
    entry = session.scalar(select(JournalEntry).where(JournalEntry.kind == "consumption"))
    assert entry.idempotency_key == f"usage:{meter.id}:{res.reading_id}"
    assert validate(session) == []


def test_a_duplicate_reading_is_ignored_and_moves_no_money(session, billed_account):
    acct, meter = billed_account()
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("1000"))
    ingest(session, meter.id, at("2026-07-01 01:00"), kwh("1010"))
    again = ingest(session, meter.id, at("2026-07-01 01:00"), kwh("1010"))
    session.commit()
    assert (again.status, again.billed_fen) == ("duplicate", 0)
    assert session.scalar(select(func.count()).select_from(Reading)) == 2
    assert ledger.account_balance(session, acct.id) == 100_000 - 600


def test_a_reading_below_the_previous_one_is_an_anomaly_for_a_manager(session, billed_account):
    acct, meter = billed_account()
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("1000"))
    res = ingest(session, meter.id, at("2026-07-01 01:00"), kwh("3"))
    after = ingest(session, meter.id, at("2026-07-01 02:00"), kwh("1002"))
    session.commit()
    assert (res.status, res.billed_fen) == ("anomaly", 0)
    event = session.scalar(select(MeterEvent).where(MeterEvent.meter_id == meter.id))
    assert event.kind == "reading_anomaly" and Decimal(event.detail["previous_total"]) == 1000
    assert session.get(Reading, res.reading_id).status == "anomaly"
    # the series goes on from the last good reading: 2 kWh, not 999
    assert after.billed_fen == 120
    assert ledger.account_balance(session, acct.id) == 100_000 - 120


def test_a_late_reading_neither_charges_twice_nor_loses_usage(session, billed_account):
    acct, meter = billed_account()
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("1000"))
    ingest(session, meter.id, at("2026-07-01 02:00"), kwh("1020"))
    late = ingest(session, meter.id, at("2026-07-01 01:00"), kwh("1010"))
    ingest(session, meter.id, at("2026-07-01 03:00"), kwh("1030"))
    session.commit()
    assert (late.status, late.late, late.billed_fen) == ("accepted", True, 0)
    assert session.get(Reading, late.reading_id).status == "late"
    assert ledger.account_balance(session, acct.id) == 100_000 - 30 * 60


def test_ct_ratio_multiplies_usage(session, billed_account):
    acct, meter = billed_account(ct_ratio=40)
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("10.00"))
    res = ingest(session, meter.id, at("2026-07-01 01:00"), kwh("10.50"))
    session.commit()
    assert res.quantity == Decimal("20.00")
    assert res.billed_fen == 1200


def test_rounding_never_drifts_over_many_small_intervals(session, billed_account):
    acct, meter = billed_account({"kind": "flat", "unit": "kWh", "price": "0.5383"})
    total = Decimal("100.00")
    ingest(session, meter.id, at("2026-07-01 00:00"), total)
    for h in range(1, 24):
        total += Decimal("0.01")
        ingest(session, meter.id, at(f"2026-07-01 {h:02d}:00"), total)
    session.commit()
    # 23 x 0.01 kWh x 0.5383 = 0.123809 yuan -> 12 fen, posted once the exact sum crosses each fen
    assert ledger.account_balance(session, acct.id) == 100_000 - 12


def test_postpaid_usage_accumulates_for_bills_without_touching_the_wallet(session, billed_account):
    acct, meter = billed_account(BEIJING_TIERS, mode="postpaid", balance_fen=0)
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("0"))
    ingest(session, meter.id, at("2026-07-15 00:00"), kwh("300"))
    ingest(session, meter.id, at("2026-07-31 00:00"), kwh("500"))
    session.commit()
    rows = session.scalars(select(BilledUsage).where(BilledUsage.account_id == acct.id)
                           .order_by(BilledUsage.ended_at)).all()
    assert sum(r.amount_fen for r in rows) == 28215
    assert [r.entry_id for r in rows] == [None, None]
    assert ledger.account_balance(session, acct.id) == 0
    assert session.scalar(select(func.count()).select_from(JournalEntry)
                          .where(JournalEntry.kind == "consumption")) == 0


def test_prepaid_meter_accounts_record_usage_but_the_meter_holds_the_balance(session, billed_account):
    acct, meter = billed_account(mode="prepaid-meter", balance_fen=0)
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("0"))
    res = ingest(session, meter.id, at("2026-07-02 00:00"), kwh("10"))
    session.commit()
    usage = session.scalar(select(BilledUsage))
    assert usage.quantity == Decimal("10") and usage.entry_id is None and usage.amount_fen == 600
    assert res.billed_fen == 0
    assert ledger.account_balance(session, acct.id) == 0


def test_balance_changed_is_announced_after_commit(session, billed_account):
    acct, meter = billed_account()
    heard = []

    def listener(**payload):
        heard.append(payload)
    signals.on("balance_changed")(listener)
    try:
        ingest(session, meter.id, at("2026-07-01 00:00"), kwh("0"))
        ingest(session, meter.id, at("2026-07-01 01:00"), kwh("5"))
        assert heard == []
        session.commit()
    finally:
        signals.disconnect("balance_changed", listener)
    assert heard[-1]["account_id"] == acct.id and heard[-1]["delta_fen"] == -300


def test_price_change_mid_cycle_splits_usage_at_the_change(session, billed_account):
    from datetime import date

    from core.tariffs.store import add_plan
    acct, meter = billed_account(BEIJING_TIERS, plan_name="bj")
    raised = {**BEIJING_TIERS, "tiers": [{"upto": "240", "price": "0.5"}, {"upto": "400", "price": "0.6"},
                                          {"upto": None, "price": "0.8"}]}
    add_plan(session, "bj", raised, site_id=acct.site_id, effective_from=date(2026, 7, 16))
    session.commit()
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("0"))
    ingest(session, meter.id, at("2026-07-16 00:00"), kwh("300"))
    ingest(session, meter.id, at("2026-07-31 00:00"), kwh("500"))
    session.commit()
    # before: 240 x 0.4883 + 60 x 0.5383; after (tiers count on): 100 x 0.6 + 100 x 0.8
    expected = Decimal("117.192") + Decimal("32.298") + Decimal("60") + Decimal("80")
    assert ledger.account_balance(session, acct.id) == 100_000 - int(expected * 100)


def test_a_reading_for_an_unknown_meter_is_refused(session):
    import pytest

    from core.errors import NotFound
    with pytest.raises(NotFound):
        ingest(session, 999_999, at("2026-07-01 00:00"), kwh("1"))


def test_a_naive_time_is_refused(session, billed_account):
    from datetime import datetime

    import pytest

    from core.errors import ValidationError
    acct, meter = billed_account()
    with pytest.raises(ValidationError, match="taken_at"):
        ingest(session, meter.id, datetime(2026, 7, 1), kwh("1"))


def test_readings_keep_their_meter_without_a_foreign_key_of_their_own(session, billed_account):
    """readings.meter_id has no foreign key (migration 0003); the billing-state row, created before
    any reading is stored, holds the meter in place, and an unknown meter is refused."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from core.errors import NotFound
    from core.models import Meter
    from core.models.billing import MeterBillingState
    _, meter = billed_account()
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("1000"))
    session.commit()
    reading = session.scalar(select(Reading).where(Reading.meter_id == meter.id))
    assert session.get(MeterBillingState, meter.id) is not None and reading is not None
    with pytest.raises(IntegrityError):
        with session.begin_nested():
            session.execute(Meter.__table__.delete().where(Meter.id == meter.id))
    session.rollback()
    with pytest.raises(NotFound):
        ingest(session, 10 ** 9, at("2026-07-01 00:00"), kwh("1"))
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Reading)) == 1

"""Large batches take the COPY path on PostgreSQL; every ledger invariant still holds."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from core import bulk_sql, ledger, signals
from core.billing import RawReading, ingest_batch, store
from core.db import session_scope
from core.ledger import bulk as ledger_bulk
from core.ledger.check import validate
from core.models import JournalEntry, Reading
from tests.billing.conftest import at


def _series(meters, hours, step="1.00"):
    rows = []
    for h in range(hours):
        for m in meters:
            rows.append(RawReading(m.id, at("2026-07-01 00:00") + timedelta(hours=h), Decimal(100) + h * Decimal(step)))
    return rows


def test_a_large_batch_posts_balanced_entries_and_exact_cached_balances(session, billed_account, pg_only):
    accounts = [billed_account() for _ in range(store.COPY_THRESHOLD + 5)]
    meters = [m for _, m in accounts]
    heard = []

    def listener(**payload):
        heard.append(payload)
    signals.on("balance_changed")(listener)
    try:
        first = ingest_batch(session, _series(meters, 4))
        session.commit()
    finally:
        signals.disconnect("balance_changed", listener)
    assert first.count("accepted") == 4 * len(meters)
    assert first.billed_fen == len(meters) * 3 * 60
    assert validate(session) == []
    assert {a.id for a, _ in accounts} == {p["account_id"] for p in heard}  # one per account
    assert all(p["delta_fen"] == -180 and p["balance_fen"] == 100_000 - 180 for p in heard)
    assert all(ledger.account_balance(session, a.id) == 100_000 - 180 for a, _ in accounts)
    # replaying the batch moves nothing
    again = ingest_batch(session, _series(meters, 4))
    session.commit()
    assert again.count("duplicate") == 4 * len(meters) and again.billed_fen == 0
    assert session.scalar(select(func.count()).select_from(JournalEntry)
                          .where(JournalEntry.kind == "consumption")) == len(meters)


def _copy_then_orm(session, monkeypatch, copy_rows, orm_rows) -> None:
    """Ingest ``copy_rows`` through the COPY path and ``orm_rows`` one by one (each committed)."""
    for rows, threshold in ((copy_rows, 1), (orm_rows, 10 ** 9)):
        monkeypatch.setattr(ledger_bulk, "COPY_THRESHOLD", threshold)
        monkeypatch.setattr(store, "COPY_THRESHOLD", threshold)
        ingest_batch(session, rows)
        session.commit()


def test_bulk_and_one_by_one_postings_are_the_same(session, billed_account, monkeypatch):
    (a1, m1), (a2, m2) = billed_account(), billed_account()
    _copy_then_orm(session, monkeypatch, _series([m1], 3, "2.5"), _series([m2], 3, "2.5"))
    assert ledger.account_balance(session, a1.id) == ledger.account_balance(session, a2.id) == 100_000 - 300
    assert validate(session) == []


def test_a_reading_written_outside_billing_is_still_seen_as_a_duplicate(session, billed_account, monkeypatch):
    acct, meter = billed_account()
    monkeypatch.setattr(store, "COPY_THRESHOLD", 1)
    ingest_batch(session, _series([meter], 2))
    session.add(Reading(meter_id=meter.id, taken_at=at("2026-07-01 05:00"), total=Decimal("105"), source="manual"))
    session.commit()
    res = ingest_batch(session, [RawReading(meter.id, at("2026-07-01 05:00"), Decimal("105")),
                                 RawReading(meter.id, at("2026-07-01 06:00"), Decimal("106"))])
    session.commit()
    assert [r.status for r in res.results] == ["duplicate", "accepted"]
    assert validate(session) == []


def test_ledger_check_command_stays_clean_after_an_import(session, billed_account):
    from click.testing import CliRunner

    from core.billing.csv_import import import_text
    from meterpay.cli import cli
    _, meter = billed_account()
    import_text("".join(f"{meter.serial},2026-07-01T{h:02d}:00:00+08:00,{100 + h}\n" for h in range(24)))
    res = CliRunner().invoke(cli, ["ledger", "check"])
    assert res.exit_code == 0, res.output
    with session_scope() as s:
        assert validate(s) == []


def test_the_copy_path_stores_the_same_entries_and_usage_as_the_orm_path(session, billed_account, monkeypatch,
                                                                         pg_only):
    from core.models import BilledUsage, Posting
    from tests.billing.conftest import BEIJING_TIERS
    (a1, m1), (a2, m2) = billed_account(BEIJING_TIERS), billed_account(BEIJING_TIERS)
    _copy_then_orm(session, monkeypatch, _series([m1], 6, "55.5"), _series([m2], 6, "55.5"))
    session.expire_all()

    def stored(account, meter):
        entry = session.scalar(select(JournalEntry).where(JournalEntry.account_id == account.id,
                                                          JournalEntry.kind == "consumption"))
        usage = session.scalar(select(BilledUsage).where(BilledUsage.meter_id == meter.id))
        legs = sorted(p.amount_fen for p in session.scalars(select(Posting).where(Posting.entry_id == entry.id)))
        meta = {k: v for k, v in entry.meta.items() if k not in ("meter_id", "reading_id")}
        return (entry.memo, entry.actor, entry.front, meta, legs, usage.lines, usage.quantity, usage.amount,
                usage.amount_fen, usage.started_at, usage.ended_at, usage.billing_mode, usage.entry_id == entry.id)
    assert stored(a1, m1) == stored(a2, m2)
    assert stored(a1, m1)[4] == [-stored(a1, m1)[8], stored(a1, m1)[8]] and stored(a1, m1)[8] > 0
    assert len(stored(a1, m1)[5]) >= 2                                     # crossed a tier: two lines
    assert validate(session) == []


def test_copy_text_escapes_what_copy_would_read_as_control():
    assert bulk_sql.copy_text("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"
    assert bulk_sql.copy_text(None) == "\\N" and bulk_sql.copy_text(Decimal("1.50")) == "1.50" and bulk_sql.copy_text(7) == "7"


def test_counts_without_detail_match_the_results_with_detail(session, billed_account):
    """Duplicates (in the batch and stored), a late reading, an anomaly and plain readings: the
    counts an import reads (detail=False) are the tally of the per-row results."""
    acct, meter = billed_account()
    ingest_batch(session, _series([meter], 3))
    session.commit()
    t = [at(f"2026-07-01 {h:02d}:00") for h in range(12)]
    batch = [RawReading(meter.id, t[1], Decimal("101")),  # stored before: duplicate
             RawReading(meter.id, at("2026-07-01 01:30"), Decimal("101")),  # before the cursor: late
             RawReading(meter.id, t[5], Decimal("110")), RawReading(meter.id, t[5], Decimal("110")),  # repeat
             RawReading(meter.id, t[6], Decimal("90")),  # below the cursor: anomaly
             RawReading(meter.id, t[7], Decimal("120")), RawReading(meter.id, t[8], Decimal("121"))]
    nested = session.begin_nested()
    detailed = ingest_batch(session, batch)
    nested.rollback()
    tally = {s: sum(1 for r in detailed.results if r.status == s) for s in ("accepted", "duplicate", "anomaly")}
    assert detailed.counts == tally
    assert tally == {"accepted": 4, "duplicate": 2, "anomaly": 1}
    assert sum(1 for r in detailed.results if r.late) == 1
    quiet = ingest_batch(session, batch, detail=False)
    assert quiet.results == [] and quiet.counts == tally
    assert quiet.billed_fen == detailed.billed_fen > 0


def test_the_streaming_reading_writer_hands_its_failure_to_the_caller(session, billed_account, pg_only):
    """A COPY that fails on the writer's thread (here a row without a meter in the second block)
    surfaces in wait(), after which the transaction rolls back and nothing is stored."""
    import pytest
    from psycopg import DataError

    from core.billing.store import ReadingWriter
    _, meter = billed_account()
    good = [(meter.id, at("2026-07-01 00:00") + timedelta(minutes=k), Decimal(k), None, None, None, None, None,
             "import", "ok") for k in range(ReadingWriter.BLOCK + 10)]
    bad = [(None, at("2026-07-02 00:00"), Decimal(1), None, None, None, None, None, "import", "ok")]
    writer = ReadingWriter(session, len(good) + len(bad))
    assert writer.streaming
    writer.send(good[:ReadingWriter.BLOCK])
    writer.send(good[ReadingWriter.BLOCK:] + bad)
    ids = writer.ids()
    assert len(ids) == len(good) + 1 and ids == sorted(ids)
    with pytest.raises(DataError):
        writer.wait()
    writer.wait()  # once is enough: a second wait is a no-op
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Reading)) == 0
    small = ReadingWriter(session, 60)
    with pytest.raises(ValueError):
        small.send(good)
    small.wait()
    session.rollback()


def test_a_large_batch_takes_its_reading_ids_on_a_connection_of_its_own(session, billed_account, monkeypatch,
                                                                        pg_only):
    import sys

    import pytest

    from core.billing.store import IdReservation
    reservation = IdReservation(session, "readings", 30)
    ids = reservation.ids(30)
    assert len(set(ids)) == 30 and ids == sorted(ids)
    with pytest.raises(ValueError):
        reservation.ids(31)
    # the bulk path with the early reservation gives the same books as without it
    ingest_module = sys.modules["core.billing.ingest"]
    made = []

    class Spy(IdReservation):
        def __init__(self, *a):
            super().__init__(*a)
            made.append(self)

    monkeypatch.setattr(ingest_module, "EARLY_IDS", 10)
    monkeypatch.setattr(ingest_module, "IdReservation", Spy)
    monkeypatch.setattr(store, "COPY_THRESHOLD", 10)
    (a1, m1), (a2, m2) = billed_account(), billed_account()
    res = ingest_batch(session, _series([m1, m2], 30))
    session.commit()
    assert len(made) == 1 and res.count("accepted") == 60
    stored = session.scalars(select(Reading.id).where(Reading.meter_id.in_([m1.id, m2.id]))).all()
    assert len(stored) == 60 and set(stored) <= set(made[0].ids(60)) and not set(stored) & set(ids)
    assert ledger.account_balance(session, a1.id) == ledger.account_balance(session, a2.id) < 100_000
    assert validate(session) == []


def test_streamed_blocks_leave_the_same_states_balances_and_rollups_as_the_orm_path(
        session, billed_account, monkeypatch, pg_only):
    """Billing's streaming writer writes each priced block's wallet deltas, billing states and
    rollups behind its COPYs (here a block of 2 meters): after three batches -- baselines only,
    then two of several readings crossing a tier -- every state, balance and rollup equals the
    ORM path's for the same readings, and ``ledger check`` (rollups too) is clean."""
    import sys

    from core.models import UsageDay, UsageMonth
    from core.models.billing import MeterBillingState
    from core.reports.check import validate as validate_rollups
    from tests.billing.conftest import BEIJING_TIERS
    monkeypatch.setattr(sys.modules["core.billing.ingest"], "_PRICE_BLOCK", 2)  # the module, not the function
    copied = [billed_account(BEIJING_TIERS, mode=mode) for mode in ("prepaid-platform", "postpaid") * 3]
    by_orm = [billed_account(BEIJING_TIERS, mode=mode) for mode in ("prepaid-platform", "postpaid") * 3]

    def batch(accounts, start, hours):
        rows = _series([m for _, m in accounts], start + hours, "37.5")
        return [r for r in rows if r.taken_at >= at("2026-07-01 00:00") + timedelta(hours=start)]
    for start, hours in ((0, 1), (1, 5), (6, 6)):
        _copy_then_orm(session, monkeypatch, batch(copied, start, hours), batch(by_orm, start, hours))
    session.expire_all()

    def state(meter):
        st = session.get(MeterBillingState, meter.id)
        return (st.last_taken_at, st.last_total, st.cycle, st.cycle_used, st.charged_month, st.exact_amount,
                st.billed_fen, st.seen_until, session.get(Reading, st.last_reading_id).taken_at)

    def sums(model, meter):
        row = session.scalar(select(model).where(model.meter_id == meter.id))
        return (row.quantity, row.fee_fen, row.q_none, row.f_none, row.intervals)
    for (a1, m1), (a2, m2) in zip(copied, by_orm):
        assert state(m1) == state(m2) and state(m1)[1] == Decimal(100) + 11 * Decimal("37.5")
        assert ledger.account_balance(session, a1.id) == ledger.account_balance(session, a2.id)
        assert sums(UsageDay, m1) == sums(UsageDay, m2) and sums(UsageMonth, m1) == sums(UsageMonth, m2)
    assert ledger.account_balance(session, copied[0][0].id) < 100_000 - 240 * 48  # past the first tier
    assert validate(session) == [] and validate_rollups(session) == []

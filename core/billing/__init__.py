"""Billing from meter readings: store each reading once, price the usage, post or accrue it.

- ``ingest(session, meter_id, taken_at, total, periods=None, source="poll") -> IngestResult``:
  the poller's entry point (one reading).
- ``ingest_batch(session, rows)``: the same for many readings at once (CSV import, benchmark).
- ``lock_states(session, meter_ids)``, ``start_tenancy(session, meter_ids)``: lock billing cursors
  (as billing does) and start a new tier cycle on them (a move-out: core.sites.accounts).
- ``replace_meter(...)``: close a meter on its final reading and start its successor.
- ``import_csv(path, ...)``: ``meterpay readings import``.
"""
from core.billing.ingest import (
    BatchResult,
    IngestResult,
    RawReading,
    ingest,
    ingest_batch,
    lock_states,
    start_tenancy,
)
from core.billing.replacement import ReplacementResult, replace_meter

__all__ = ["ingest", "ingest_batch", "IngestResult", "RawReading", "BatchResult", "replace_meter",
           "ReplacementResult", "lock_states", "start_tenancy"]

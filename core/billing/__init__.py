"""Billing from meter readings: store each reading once, price the usage, post or accrue it.

- ``ingest(session, meter_id, taken_at, total, periods=None, source="poll") -> IngestResult``:
  the poller's entry point (one reading).
- ``ingest_batch(session, rows)``: the same for many readings at once (CSV import, benchmark).
- ``replace_meter(...)``: close a meter on its final reading and start its successor.
- ``import_csv(path, ...)``: ``meterpay readings import``.
"""
from core.billing.ingest import BatchResult, IngestResult, RawReading, ingest, ingest_batch
from core.billing.replacement import ReplacementResult, replace_meter

__all__ = ["ingest", "ingest_batch", "IngestResult", "RawReading", "BatchResult", "replace_meter",
           "ReplacementResult"]

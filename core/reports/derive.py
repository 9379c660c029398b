"""The rollups computed again from the raw rows: ``meterpay report rebuild`` (a database that held
readings and entries before the rollups existed, or one restored from a dump without them).

The same rules as ``core.reports.rollups`` (it is the one that defines them): postings of revenue,
cash, clearing and receivable accounts by business day; billed usage by the local day of its
closing reading, split per period; stored readings by local day. Rows are streamed, so memory
holds the rollup rows, not the raw ones.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.models import JournalEntry, LedgerAccount, Meter, Posting, Reading, Site
from core.models.billing import BilledUsage
from core.models.report import LedgerDay, ReadingDay, UsageDay, UsageMonth
from core.reports import rollups

_STREAM = 20_000


def _zones(session: Session) -> tuple[dict[int, tuple[int, ZoneInfo]], dict[int, tuple[str, ZoneInfo]]]:
    """account id -> (site id, zone); meter id -> (kind, zone)."""
    sites = {sid: rollups.zone(tz) for sid, tz in session.execute(select(Site.id, Site.timezone))}
    from core.models import Account
    accounts = {a: (s, sites[s]) for a, s in session.execute(select(Account.id, Account.site_id))}
    meters = {m: (k, sites[s]) for m, k, s in session.execute(select(Meter.id, Meter.kind, Meter.site_id))}
    return accounts, meters


def ledger_rows(session: Session) -> rollups.LedgerRows:
    accounts, _ = _zones(session)
    default = rollups.zone(None)
    rolled = select(LedgerAccount.id).where(LedgerAccount.kind.in_(rollups.ROLLED_KINDS))
    q = (select(JournalEntry.kind, JournalEntry.idempotency_key, JournalEntry.account_id, JournalEntry.meta,
                JournalEntry.created_at, Posting.ledger_account_id, Posting.amount_fen)
         .join(Posting, Posting.entry_id == JournalEntry.id)
         .where(Posting.ledger_account_id.in_(rolled)).order_by(JournalEntry.id)
         .execution_options(yield_per=_STREAM))
    out = rollups.LedgerRows()
    for part in session.execute(q).partitions():
        readings, paid = rollups.lookup_times(session, [(r.kind, r.meta) for r in part])
        for kind, key, account_id, meta, created_at, ledger_account_id, amount in part:
            site_id, tz = accounts.get(account_id or 0, (None, default))
            day = rollups.day_of(kind, key, meta, created_at, tz, readings, paid)
            out.add(account_id or 0, day, ledger_account_id, rollups.effective_kind(kind, meta), site_id, amount)
    return out


def usage_rows(session: Session) -> rollups.UsageRows:
    _, meters = _zones(session)
    q = (select(BilledUsage.meter_id, BilledUsage.account_id, BilledUsage.ended_at, BilledUsage.quantity,
                BilledUsage.amount_fen, BilledUsage.lines).execution_options(yield_per=_STREAM))
    out = rollups.UsageRows()
    for part in session.execute(q).partitions():
        for meter_id, account_id, ended_at, quantity, fen, lines in part:
            kind, tz = meters[meter_id]
            out.add(meter_id, account_id or 0, rollups.local_day(ended_at, tz), kind, quantity, int(fen), lines or [])
    return out


def reading_rows(session: Session) -> list[dict]:
    _, meters = _zones(session)
    q = (select(Reading.meter_id, Reading.taken_at, Reading.total, Reading.status)
         .order_by(Reading.meter_id, Reading.taken_at).execution_options(yield_per=_STREAM))
    days: dict[tuple, list] = {}
    for part in session.execute(q).partitions():
        for meter_id, at, total, status in part:
            _, tz = meters.get(meter_id, ("", rollups.zone(None)))
            key = (meter_id, rollups.local_day(at, tz))
            cur = days.get(key)
            if cur is None:
                cur = days[key] = [None, None, None, None, 0, 0]
            if status == "anomaly":
                cur[5] += 1
            elif status in ("ok", "late"):
                cur[4] += 1
                if cur[0] is None or at < cur[0]:
                    cur[0], cur[1] = at, total
                if cur[2] is None or at > cur[2]:
                    cur[2], cur[3] = at, total
    return [{"meter_id": m, "day": d, "first_at": v[0], "first_total": v[1], "last_at": v[2], "last_total": v[3],
             "readings": v[4], "anomalies": v[5]} for (m, d), v in sorted(days.items())]


def rebuild(session: Session) -> dict[str, int]:
    """Replace every rollup with what the raw rows say, in the caller's transaction (lock out
    writers first: run it while nothing ingests or posts). Returns the rows written per table."""
    for model in (LedgerDay, UsageDay, UsageMonth, ReadingDay):
        session.execute(delete(model))
    ledger = ledger_rows(session)
    n_ledger = len(ledger.rows)
    ledger.write(session)
    usage = usage_rows(session)
    n_days, n_months = len(usage.days), len(usage.months())
    usage.write(session)
    readings = reading_rows(session)
    rollups.write_readings(session, readings)
    return {"ledger_days": n_ledger, "usage_days": n_days, "usage_months": n_months, "reading_days": len(readings)}

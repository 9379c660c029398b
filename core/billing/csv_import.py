"""``meterpay readings import FILE.csv``: stream a CSV of readings into billing, chunk by chunk.

Columns ``meter_serial,taken_at,total[,sharp,peak,flat,valley,deep_valley]``, with or without that
header line (with it, columns may come in any order). ``taken_at`` is ISO 8601; without a UTC
offset it is read in the meter's site timezone. Rows are read, validated and ingested
``chunk_size`` at a time, each chunk in its own transaction, so memory does not grow with the file.
A bad row is reported with its line number and skipped; the good rows still go in.
"""
from __future__ import annotations

import csv
import gc
import io
import operator
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation

from sqlalchemy import select

from core import config
from core.billing.ingest import RawReading, ingest_batch
from core.bulk_sql import ids_in
from core.db import session_scope
from core.errors import MeterpayError, ValidationError
from core.ledger.money import format_fen
from core.models import Meter, Site
from core.tariffs.plan import PERIODS
from core.tariffs.usage import MAX_REGISTER
from core.tariffs.zones import zone

COLUMNS = ("meter_serial", "taken_at", "total", *PERIODS)
# A register value that needs no further check: digits, at most 3 decimals, below 10^12.
_PLAIN = re.compile(r"[0-9]{1,12}(?:\.[0-9]{0,3})?\Z").match
DEFAULT_CHUNK = 250_000  # PostgreSQL (COPY): about 100 MB in memory while a chunk is billed
SQLITE_CHUNK = 20_000  # elsewhere rows go through the ORM, which holds far more per row
_PARSE_BATCH = 5_000  # raw CSV rows held before they are parsed into (much smaller) readings
# A chunk is ``chunk_size`` rows, a row with per-period registers counting this much more (its
# registers are a dict of Decimals: about three times the memory of a plain row).
_REGISTER_WEIGHT = 2
_MILLI = Decimal("0.001")


@dataclass
class ImportSummary:
    accepted: int = 0  # stored (late readings included: stored, their interval already billed)
    duplicates: int = 0
    anomalies: int = 0
    billed_fen: int = 0
    errors: list[str] = field(default_factory=list)  # "line 7: total: 'x' is not a decimal"
    rows: int = 0

    def as_json(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "anomalies": self.anomalies,
                "billed_amount": format_fen(self.billed_fen)}


class _Meters:
    """serial -> (meter id, site timezone), looked up a chunk at a time and remembered."""

    def __init__(self):
        self.known: dict[str, tuple[int, str] | None] = {}

    def load(self, session, serials: set[str]) -> None:
        todo = [s for s in serials if s not in self.known]
        if not todo:
            return
        for k in range(0, len(todo), 5000):
            part = todo[k:k + 5000]
            rows = session.execute(select(Meter.serial, Meter.id, Site.timezone).join(Site, Site.id == Meter.site_id)
                                   .where(ids_in(session, Meter.serial, part, strings=True)))
            found = {s: (mid, tz) for s, mid, tz in rows}
            for s in part:
                self.known[s] = found.get(s)


def _looks_like_number(text: str) -> bool:
    try:
        return Decimal(text.strip()).is_finite()
    except ArithmeticError:
        return False


def _looks_like_time(text: str) -> bool:
    from datetime import datetime
    try:
        datetime.fromisoformat(text.strip())
        return True
    except ValueError:
        return False


def _decimal(text: str, name: str) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"{name}: {text!r} is not a decimal", field=name) from None
    if not d.is_finite() or d < 0 or d >= MAX_REGISTER:
        raise ValidationError(f"{name}: {text!r} is not a register value (a decimal from 0 below 10^12)",
                              field=name)
    dot = text.find(".")
    if (dot >= 0 and len(text) - dot > 4 or "e" in text or "E" in text) and d != d.quantize(_MILLI):
        raise ValidationError(f"{name}: {text!r} has more than 3 decimal places", field=name)
    return d


class _Parser:
    """Turns one CSV row into a RawReading, given the column positions."""

    def __init__(self, col: dict[str, int], meters: _Meters):
        self.i_serial, self.i_at, self.i_total = col["meter_serial"], col["taken_at"], col.get("total")
        self.periods = [(p, col[p]) for p in PERIODS if p in col]
        self.meters = meters
        # A poll round shares its timestamps: each text is parsed once per chunk, and rows of one
        # time share one (immutable) datetime, which also makes sorting and comparing them cheap.
        self.times: dict[tuple[str, str | None], datetime] = {}
        self.offset_times: dict[str, datetime] = {}  # texts with a UTC offset: the same in any zone

    def rows(self, pending: list[tuple[int, list[str]]], good: list, errors: list) -> None:
        """Parse ``pending`` (line number, row) into ``good`` readings and ``errors`` messages.

        The plain row (a known serial, a time seen before, plain decimals) takes the short path;
        anything else goes through ``__call__``, which says what is wrong.
        """
        known, times, plain = self.meters.known.get, self.offset_times.get, _PLAIN
        i_serial, i_at, i_total = self.i_serial, self.i_at, self.i_total
        if i_total is None:
            core_width = 1 << 30  # no total column: every row goes the long way (and fails)
            i_total = 0  # never read: no row is that wide
        else:
            core_width = max(i_serial, i_at, i_total) + 1
        # row length -> (the period columns it has, a getter of their cells, those cells all empty)
        by_width: dict[int, tuple[list[tuple[str, int]], Callable, tuple]] = {}
        add = good.append
        new = tuple.__new__  # a RawReading without the Python-level __new__ of a NamedTuple
        for line, row in pending:
            n = len(row)
            if n >= core_width:
                shape = by_width.get(n)
                if shape is None:
                    shape = by_width[n] = _row_shape([(p, i) for p, i in self.periods if i < n])
                periods, cells, blank = shape
                m = known(row[i_serial])
                taken_at = times(row[i_at])
                total = row[i_total]
                if m is not None and taken_at is not None and plain(total):
                    if cells(row) == blank:
                        add(new(RawReading, (m[0], taken_at, Decimal(total), None, "import")))
                        continue
                    regs = None
                    for name, i in periods:
                        v = row[i]
                        if v:
                            if not plain(v):
                                break
                            if regs is None:
                                regs = {}
                            regs[name] = Decimal(v)
                    else:
                        add(new(RawReading, (m[0], taken_at, Decimal(total), regs, "import")))
                        continue
            try:
                add(self(row))
            except MeterpayError as exc:
                errors.append(f"line {line}: {exc.message}")

    def __call__(self, row: list[str]) -> RawReading:
        n = len(row)
        serial = row[self.i_serial].strip() if self.i_serial < n else ""
        if not serial:
            raise ValidationError("meter_serial: missing", field="meter_serial")
        known = self.meters.known.get(serial)
        if known is None:
            raise ValidationError(f"meter_serial: no meter {serial!r}", field="meter_serial")
        meter_id, tz = known
        text = row[self.i_at].strip() if self.i_at < n else ""
        if not text:
            raise ValidationError("taken_at: missing", field="taken_at")
        taken_at = self.times.get((text, tz))
        if taken_at is None:
            try:
                taken_at = datetime.fromisoformat(text)
            except ValueError:
                raise ValidationError(f"taken_at: {text!r} is not an ISO 8601 time", field="taken_at") from None
            if taken_at.tzinfo is None:
                taken_at = taken_at.replace(tzinfo=zone(tz or "Asia/Shanghai"))
            else:
                taken_at = _shared_offset(taken_at)
                if len(self.offset_times) < 100_000:
                    self.offset_times[text] = taken_at
            self.times[(text, tz)] = taken_at
        total = row[self.i_total].strip() if self.i_total is not None and self.i_total < n else ""
        if not total:
            raise ValidationError("total: missing", field="total")
        periods = None
        for name, i in self.periods:
            if i < n:
                v = row[i].strip()
                if v:
                    if periods is None:
                        periods = {}
                    periods[name] = _decimal(v, name)
        return RawReading(meter_id, taken_at, _decimal(total, "total"), periods, "import")


_OFFSETS: dict[tuple[timedelta | None, str | None], tzinfo] = {}  # (UTC offset, name) -> one timezone object


def _shared_offset(at: datetime) -> datetime:
    """``at`` with the process's one ``timezone`` object of its UTC offset: the same time, but
    times of one offset then compare and hash without computing offsets (``fromisoformat`` makes
    a new ``timezone`` for every text, and two datetimes with different tzinfo objects call
    ``utcoffset`` on both at every comparison: 1 us instead of 0.2 us, for every comparison
    billing makes between reading times)."""
    tz = at.tzinfo
    if type(tz) is not timezone:
        return at
    shared = _OFFSETS.setdefault((tz.utcoffset(None), tz.tzname(None)), tz)
    return at if shared is tz else at.replace(tzinfo=shared)


def _row_shape(periods: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], Callable, tuple]:
    """The period columns of a row, a function returning their cells as a tuple, and that tuple
    when every one is empty (one comparison tells a row without registers)."""
    if not periods:
        return periods, lambda row: (), ()
    getter = operator.itemgetter(*[i for _, i in periods])
    if len(periods) == 1:
        return periods, lambda row: (getter(row),), ("",)
    return periods, getter, ("",) * len(periods)


@dataclass
class _Chunk:
    readings: list[RawReading]
    errors: list[str]
    end_position: int | None


def _parsed_chunks(binary, chunk_size: int) -> Iterator[_Chunk]:
    """Read and parse the file a chunk at a time (runs in the reader thread)."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    meters = _Meters()
    col = {name: i for i, name in enumerate(COLUMNS)}
    pending: list[tuple[int, list[str]]] = []  # raw rows, parsed every _PARSE_BATCH rows (they are big)
    good: list[RawReading] = []
    errors: list[str] = []
    parser: _Parser | None = None  # remembers the chunk's times; each chunk starts afresh
    weight = 0  # extra weight of the chunk's parsed rows beyond one per row (registers)

    def parse_pending() -> None:
        nonlocal parser, weight
        i_serial = col["meter_serial"]
        try:
            serials = {r[i_serial] for _, r in pending}
        except IndexError:
            serials = {r[i_serial] for _, r in pending if len(r) > i_serial}
        if not meters.known.keys() >= serials:
            with session_scope() as session:
                meters.load(session, {s.strip() for s in serials})
        if parser is None:
            parser = _Parser(col, meters)
        before = len(good)
        parser.rows(pending, good, errors)
        pending.clear()
        # a reading with per-period registers holds about three times the memory of one without
        weight += _REGISTER_WEIGHT * sum(1 for r in good[before:] if r.periods is not None)

    def parse() -> _Chunk:
        nonlocal parser, weight
        if pending:
            parse_pending()
        try:
            position = binary.tell()
        except (OSError, ValueError):
            position = None
        chunk = _Chunk(good.copy(), errors.copy(), position)
        good.clear()
        errors.clear()
        parser, weight = None, 0
        return chunk

    first = True
    in_chunk = 0  # rows read into the chunk being built (parsed or pending)
    batch = max(1, min(_PARSE_BATCH, chunk_size // 10))  # a chunk overshoots its weight by one batch at most
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if first:
                first = False
                names = [c.strip().lower() for c in row]
                if names[0] == "meter_serial" or any(n in COLUMNS for n in names):
                    unknown = [n for n in names if n not in COLUMNS]
                    if unknown or "taken_at" not in names or "total" not in names:
                        raise ValidationError(f"header: unknown or missing columns (expected "
                                              f"{','.join(COLUMNS)}; got {','.join(names)})", field="header")
                    col = {name: i for i, name in enumerate(names)}
                    continue
                if len(row) >= 3 and not _looks_like_number(row[2]) and not _looks_like_time(row[1]):
                    raise ValidationError(f"header: line 1 is neither the header ({','.join(COLUMNS)}) nor a "
                                          f"reading (total {row[2].strip()!r} is not a number)", field="header")
            pending.append((reader.line_num, row))
            in_chunk += 1
            if in_chunk % batch == 0 or in_chunk + weight >= chunk_size:
                parse_pending()
                if in_chunk + weight >= chunk_size:
                    in_chunk = 0
                    yield parse()
        if pending or good or errors:
            yield parse()
    finally:
        text.detach()


_DONE = object()


def _read_ahead(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """Parse the next chunk in a thread while the caller ingests this one.

    At most two chunks are alive: the one being ingested and the one being parsed. The reader
    hands a chunk over and waits until it is taken before it reads on, so a parsed chunk never
    waits in line while a third is read.
    """
    q: queue.Queue = queue.Queue(maxsize=1)
    taken = threading.Semaphore(0)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in chunks:
                q.put(item)  # the queue is empty: the chunk before was taken
                while not taken.acquire(timeout=0.2):
                    if stop.is_set():
                        return
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="readings-import-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            taken.release()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a chunk's rows are alive.

    A chunk is hundreds of thousands of small tuples and lists with no reference cycles; at the
    default threshold (a young collection every 700 allocations, a full one as the heap grows by a
    quarter) the collector's scans of them were half of the parse time. It still runs, every
    50,000 allocations; the old thresholds come back afterwards.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 50_000), max(old[1], 20), old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def default_chunk() -> int:
    """Rows per transaction: METERPAY_IMPORT_CHUNK, else by database (see the constants above)."""
    configured = config.get("METERPAY_IMPORT_CHUNK")
    if configured is not None:
        return configured
    return SQLITE_CHUNK if config.get_settings().is_sqlite else DEFAULT_CHUNK


def import_csv(binary, *, chunk_size: int | None = None, on_bytes: Callable[[int], None] | None = None,
               on_error: Callable[[str], None] | None = None) -> ImportSummary:
    """Import readings from a binary file object; returns the summary. Bad rows go to ``on_error``.

    One thread reads and parses the next chunk while this one ingests the current chunk, each in
    its own transaction.
    """
    with _fewer_collections():
        return _import(binary, chunk_size or default_chunk(), on_bytes, on_error)


def _import(binary, chunk_size: int, on_bytes: Callable[[int], None] | None,
            on_error: Callable[[str], None] | None) -> ImportSummary:
    summary = ImportSummary()
    position = 0
    for chunk in _read_ahead(_parsed_chunks(binary, chunk_size)):
        for message in chunk.errors:
            summary.errors.append(message)
            if on_error is not None:
                on_error(message)
        summary.rows += len(chunk.readings) + len(chunk.errors)
        if chunk.readings:
            with session_scope() as session:
                result = ingest_batch(session, chunk.readings, front="cli", validated=True, detail=False)
            summary.accepted += result.count("accepted")
            summary.duplicates += result.count("duplicate")
            summary.anomalies += result.count("anomaly")
            summary.billed_fen += result.billed_fen
        if on_bytes is not None and chunk.end_position is not None:
            on_bytes(chunk.end_position - position)
            position = chunk.end_position
    return summary


def import_text(text: str, **kw) -> ImportSummary:
    """Import from a string (tests, small pastes)."""
    return import_csv(io.BytesIO(text.encode("utf-8")), **kw)

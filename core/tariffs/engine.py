"""The pricing engine (pure): dated plan versions + usage intervals -> priced lines.

Usage is a series of intervals between cumulative register readings. Each interval's quantity is
split in proportion to time across version changes and tier-cycle boundaries (the boundaries are
local midnights in the site's timezone), then across TOU periods: by the meter's own per-period
registers when both readings carry them, else by time through the day tables. Splits allocate
whole micro-units (1e-6) by largest remainder, so the parts always add up to the interval exactly
and every amount is an exact decimal; nothing is rounded here. Tier blocks count cumulative usage
within a cycle; that count (and the last month a fixed charge was made for) is the ``State``
carried from one call to the next, so pricing a series in parts equals pricing it whole.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from core.tariffs.calendar import day_pieces, table_for
from core.tariffs.plan import PERIODS, Plan

QUANTUM_EXP = 6
_UNITS_PER = 10 ** QUANTUM_EXP
ZERO = Decimal(0)
_PERIOD_ORDER = {p: i for i, p in enumerate(PERIODS)}
_MEMO_SIZE = 4096


@dataclass(frozen=True)
class Version:
    """A plan as it applies from ``effective_from`` (a local date) until the next version."""

    effective_from: date
    plan: Plan


class Interval(NamedTuple):
    """Usage between two readings: ``quantity`` (already times the CT ratio) over [start, end).

    ``periods`` are the per-period register deltas over the interval when the meter gave them.
    (A NamedTuple: billing builds one per reading, so it must be cheap.)
    """

    start: datetime
    end: datetime
    quantity: Decimal
    periods: Mapping[str, Decimal] | None = None


@dataclass(frozen=True)
class State:
    """What pricing carries between calls: the tier cycle and usage counted in it so far, and the
    latest month ("YYYY-MM") a monthly charge was made for."""

    cycle: str | None = None
    used: Decimal = ZERO
    charged_month: str | None = None


@dataclass(frozen=True)
class Line:
    """One priced line. ``period`` (TOU), ``tier`` (1-based) or ``charge`` ("monthly") say what it is;
    ``amount`` is exact (quantity x price), rounded only where a total becomes fen."""

    quantity: Decimal
    price: Decimal
    amount: Decimal
    period: str | None = None
    tier: int | None = None
    charge: str | None = None

    @property
    def key(self) -> tuple:
        return (self.charge, self.tier, self.period, self.price)


@dataclass(frozen=True)
class Priced:
    lines: tuple[Line, ...]
    quantity: Decimal  # usage priced (fixed charges not included)
    amount: Decimal  # exact sum of the lines
    state: State


def allocate(quantity: Decimal, weights: Sequence[int]) -> list[Decimal]:
    """Split ``quantity`` over ``weights`` in whole micro-units, largest remainder first."""
    if len(weights) == 1:
        return [quantity]
    total = sum(weights)
    units = int(quantity.scaleb(QUANTUM_EXP).to_integral_value())
    if total <= 0:
        weights, total = [1] * len(weights), len(weights)
    raw = [units * w for w in weights]
    base = [r // total for r in raw]
    left = units - sum(base)
    if left:
        order = sorted(range(len(weights)), key=lambda i: (-(raw[i] % total), i))
        for i in order[:left]:
            base[i] += 1
    return [Decimal(b).scaleb(-QUANTUM_EXP) for b in base]


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def cycle_key(plan: Plan, local: datetime) -> str:
    """The tier cycle a local time falls in, named by the date it starts."""
    s = plan.cycle_start_day
    if plan.cycle == "month":
        y, m = local.year, local.month
        if local.day < s:
            y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        return f"{y:04d}-{m:02d}-{s:02d}"
    y = local.year
    if (local.month, local.day) < (plan.cycle_start_month, s):
        y -= 1
    return f"{y:04d}-{plan.cycle_start_month:02d}-{s:02d}/year"


def _is_cycle_start(plan: Plan, day: date) -> bool:
    if not plan.is_tiered or day.day != plan.cycle_start_day:
        return False
    return plan.cycle == "month" or day.month == plan.cycle_start_month


def version_at(versions: Sequence[Version], day: date) -> Version:
    """The version in force on a local date (the earliest one if the date precedes them all)."""
    chosen = versions[0]
    for v in versions:
        if v.effective_from <= day:
            chosen = v
        else:
            break
    return chosen


class Pricer:
    """Prices intervals against dated versions in one timezone, carrying ``State``."""

    def __init__(self, versions: Sequence[Version] | Plan, tz: str | ZoneInfo = "Asia/Shanghai"):
        if isinstance(versions, Plan):
            versions = [Version(date.min, versions)]
        if not versions:
            raise ValueError("a pricer needs at least one plan version")
        self.versions = sorted(versions, key=lambda v: v.effective_from)
        self.unit = self.versions[0].plan.unit  # every version of a stored plan has the plan's unit
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self._change_days = {v.effective_from for v in self.versions[1:]}
        self._simple = len(self.versions) == 1 and not self.versions[0].plan.is_tou
        only = self.versions[0].plan
        # One flat version and no fixed charge: the amount is the usage times the price.
        self._flat_price = (only.price if len(self.versions) == 1 and only.kind == "flat"
                            and not only.monthly_charge else None)
        # Many meters on one plan share their reading times (a poll round): the cuts and TOU pieces
        # of an interval are remembered per pricer (bounded: a pricer lives for one batch or quote).
        self._chunk_memo: dict[tuple[datetime, datetime], tuple[list[Any], tuple[Any, ...] | None]] = {}
        self._piece_memo: dict[tuple, list] = {}

    @property
    def uses_registers(self) -> bool:
        """Some version is TOU: the meter's per-period registers can decide the split."""
        return any(v.plan.is_tou for v in self.versions)

    @property
    def is_flat(self) -> bool:
        """One flat version without a fixed charge: only the total usage matters."""
        return self._flat_price is not None

    # -- splitting -------------------------------------------------------------------------

    def _chunks(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, Version]]:
        """Cut [start, end) at version changes and tier-cycle starts (local midnights)."""
        return self._span(start, end)[0]

    def _span(self, start: datetime, end: datetime) -> tuple[list[Any], tuple[Any, ...] | None]:
        """(chunks, what joining needs: version, cycle and whether it is TOU; None if cut)."""
        key = (start, end)
        found: tuple[list[Any], tuple[Any, ...] | None] | None = self._chunk_memo.get(key)
        if found is None:
            chunks = self._cut(start, end)
            base: tuple[Any, ...] | None = None
            if len(chunks) == 1:
                a, _, version = chunks[0]
                plan = version.plan
                base = (id(version), cycle_key(plan, a) if plan.is_tiered else None,
                        plan.is_tou, plan.is_tiered)
            found = (chunks, base)
            if len(self._chunk_memo) >= _MEMO_SIZE:
                self._chunk_memo.clear()
            self._chunk_memo[key] = found
        return found

    def _cut(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, Version]]:
        tz = self.tz
        ls, le = start.astimezone(tz), end.astimezone(tz)
        cuts = []
        day = ls.date() + timedelta(days=1)
        last = le.date()
        if self._simple and not self.versions[0].plan.is_tiered:
            day = last + timedelta(days=1)  # one flat version: nothing to cut at
        while day <= last:
            if day in self._change_days or _is_cycle_start(version_at(self.versions, day).plan, day):
                cut = _local_midnight(day, tz)
                if ls < cut < le:
                    cuts.append(cut)
            day += timedelta(days=1)
        points = [ls, *cuts, le]
        return [(a, b, version_at(self.versions, a.date())) for a, b in zip(points, points[1:])]

    def _tou_pieces(self, plan: Plan, a: datetime, b: datetime) -> list[tuple[int, str]]:
        """(weight in microseconds, period) of local [a, b) by the day tables, in time order."""
        key = (id(plan), a, b)
        found = self._piece_memo.get(key)
        if found is None:
            found = self._day_table_pieces(plan, a, b)
            if len(self._piece_memo) >= _MEMO_SIZE:
                self._piece_memo.clear()
            self._piece_memo[key] = found
        return found

    def _day_table_pieces(self, plan: Plan, a: datetime, b: datetime) -> list[tuple[int, str]]:
        out = []
        day = a.date()
        # microseconds of a and b after a's local midnight (wall clock, as meters keep time)
        a_us = _micros(a - _local_midnight(day, a.tzinfo))  # type: ignore[arg-type]  # a is in the site's ZoneInfo
        b_us = a_us + _micros(b - a)
        base = 0
        while base < b_us:
            for s_min, e_min, period in day_pieces(plan.table(table_for(plan, day))):
                lo = max(a_us, base + s_min * 60_000_000)
                hi = min(b_us, base + e_min * 60_000_000)
                if hi > lo:
                    out.append((hi - lo, period))
            day += timedelta(days=1)
            base += 86_400_000_000
        return out

    # -- pricing ---------------------------------------------------------------------------

    def price(self, intervals: Iterable[Interval], state: State = State()) -> Priced:
        if self._flat_price is not None:
            p = self._flat_price
            q = sum((iv.quantity for iv in intervals), ZERO)
            return Priced((Line(q, p, q * p),) if q else (), q, q * p, state)
        acc: dict[tuple, list] = {}
        quantity = ZERO
        for iv in self._coalesced(intervals):
            state = self._price_interval(iv, state, acc)
            quantity += iv.quantity
        lines = [Line(q, price, amount, period=period, tier=tier, charge=charge)
                 for (charge, tier, period, price), (q, amount) in acc.items() if q or charge is not None]
        merged = merge_lines(lines)
        return Priced(tuple(merged), quantity, sum((ln.amount for ln in merged), ZERO), state)

    def _coalesced(self, intervals: Iterable[Interval]) -> Iterable[Interval]:
        """Join back-to-back intervals where pricing them as one gives exactly the same lines.

        That holds when both lie in one piece of the same version and tier cycle (no cut between
        them), and either the plan is not TOU (tier blocks count cumulative usage, so a block fills
        the same whichever way the usage is cut) or it is TOU without tiers and both carry register
        deltas that add up to their quantity (the split is then the registers themselves). A TOU
        split by time is not additive (it depends on each interval's own length), and tiered TOU
        fills blocks period by period in each interval's order, so those intervals stay as they are.
        """
        run: Interval | None = None
        run_key = None
        for iv in intervals:
            key = self._coalesce_key(iv)
            if run is not None and key is not None and key == run_key and iv.start == run.end:
                periods = None  # a plan without TOU never looks at registers
                if key[2] is not None and run.periods is not None and iv.periods is not None:
                    periods = {p: run.periods[p] + iv.periods[p] for p in run.periods}
                run = Interval(run.start, iv.end, run.quantity + iv.quantity, periods)
                continue
            if run is not None:
                yield run
            run, run_key = iv, key
        if run is not None:
            yield run

    def _coalesce_key(self, iv: Interval) -> tuple | None:
        """What two intervals must share to be priced as one, or None when this one must stay alone."""
        if iv.quantity < 0:
            return None
        base = self._span(iv.start, iv.end)[1]
        if base is None:
            return None
        version, cycle, is_tou, is_tiered = base
        if not is_tou:
            return (version, cycle, None)
        p = iv.periods
        if is_tiered or not p or any(v < 0 for v in p.values()) or sum(p.values(), ZERO) != iv.quantity:
            return None
        return (version, cycle, tuple(k for k in PERIODS if k in p))

    def _price_interval(self, iv: Interval, state: State, out: dict) -> State:
        chunks = self._chunks(iv.start, iv.end)
        if len(chunks) == 1:
            shares = [iv.quantity]
        else:
            shares = allocate(iv.quantity, [_micros(b - a) for a, b, _ in chunks])
        registers = None
        if iv.periods and any(v > 0 for v in iv.periods.values()):
            registers = [(p, iv.periods[p]) for p in PERIODS if p in iv.periods and iv.periods[p] > 0]
        for (a, b, version), share in zip(chunks, shares):
            plan = version.plan
            state = self._monthly_charge(plan, a, b, state, out)
            if plan.is_tou:
                if registers is not None:
                    parts = allocate(share, [int(v.scaleb(QUANTUM_EXP)) for _, v in registers])
                    pieces = [(a, p, q) for (p, _), q in zip(registers, parts)]
                else:
                    tp = self._tou_pieces(plan, a, b)
                    parts = allocate(share, [w for w, _ in tp])
                    # chunks never cross a cycle start, so every piece is in the cycle of ``a``
                    pieces = [(a, p, q) for (_, p), q in zip(tp, parts)]
            else:
                pieces = [(a, None, share)]  # type: ignore[list-item]  # a flat share has no period
            for at, period, qty in pieces:
                state = self._price_piece(plan, at, period, qty, state, out)
        return state

    def _monthly_charge(self, plan: Plan, a: datetime, b: datetime, state: State, out: dict) -> State:
        if not plan.monthly_charge:
            return state
        last = b - timedelta(microseconds=1)
        y, m = a.year, a.month
        while (y, m) <= (last.year, last.month):
            month = f"{y:04d}-{m:02d}"
            if state.charged_month is None or month > state.charged_month:
                _add(out, ("monthly", None, None, plan.monthly_charge), Decimal(1), plan.monthly_charge)
                state = replace(state, charged_month=month)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return state

    def _price_piece(self, plan: Plan, at: datetime, period: str | None, qty: Decimal, state: State,
                     out: dict) -> State:
        if not plan.is_tiered:
            price = plan.price if period is None else plan.period_price(period)
            assert price is not None  # a flat plan has its price; a TOU plan prices every period
            _add(out, (None, None, period, price), qty, qty * price)
            return state
        key = cycle_key(plan, at)
        used = state.used if key == state.cycle else ZERO
        base = plan.period_price(period) if period is not None else ZERO
        left = qty
        for n, tier in enumerate(plan.tiers, start=1):
            if left <= 0:
                break
            if tier.upto is not None and used >= tier.upto:
                continue
            room = left if tier.upto is None else min(left, tier.upto - used)
            price = base + tier.price
            _add(out, (None, n, period, price), room, room * price)
            used += room
            left -= room
        return State(key, used, state.charged_month)


def _add(acc: dict, key: tuple, quantity: Decimal, amount: Decimal) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = [quantity, amount]
    else:
        cur[0] += quantity
        cur[1] += amount


def merge_lines(lines: Iterable[Line]) -> list[Line]:
    """One line per (charge, tier, period, price), usage lines first, by tier then period."""
    merged: dict[tuple, Line] = {}
    for ln in lines:
        if ln.quantity == 0 and ln.charge is None:
            continue
        prev = merged.get(ln.key)
        merged[ln.key] = ln if prev is None else replace(prev, quantity=prev.quantity + ln.quantity,
                                                         amount=prev.amount + ln.amount)
    first_seen = {k: i for i, k in enumerate(merged)}
    return sorted(merged.values(), key=lambda ln: (ln.charge is not None, ln.tier or 0,
                                                   _PERIOD_ORDER.get(ln.period or "", -1), first_seen[ln.key]))

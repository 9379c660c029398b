"""Energy reports: 用电综合报表 (per shop for a month, TOU split and fees; water too), 能耗同比
(year-on-year per room, building or site) and 能耗日月年报表 (one meter by day, month or year).

The first two read ``usage_months`` (billed usage: quantity times the CT ratio, dated by the reading
that closed each billed interval; the fee is what billing posted or accrued, so a prepaid-platform
shop's fee is exactly its usage entries). The meter report reads ``reading_days`` (the readings
themselves): a period without readings is a gap (usage null), a period with an anomalous reading is
flagged, nothing is interpolated. See docs/reports.md.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Account, Meter, Site, Tenant
from core.models.report import ReadingDay, UsageMonth
from core.reports.base import (
    UNITS,
    natural,
    next_month,
    parse_choice,
    parse_month,
    parse_year,
    pct,
    places,
    qty,
    yuan,
)

ZERO = Decimal(0)
# What a report shows per period: the rollup's periods folded into the four of the reference product
# (deep valley counts as valley; usage priced without a TOU split counts as flat, the standard rate).
SHOWN = {"sharp": ("sharp",), "peak": ("peak",), "flat": ("flat", "none"), "valley": ("valley", "deep_valley")}
SHOWN_PERIODS = tuple(SHOWN)


# --- 用电综合报表 ----------------------------------------------------------------------------

@dataclass
class EnergyRow:
    room: str
    building: str
    floor: str
    tenant: str | None
    account_id: int | None
    quantity: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(("total", *SHOWN_PERIODS), ZERO))
    fee: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("total", *SHOWN_PERIODS, "fixed"), 0))

    def add(self, r: Any) -> None:
        self.quantity["total"] += r.quantity
        self.fee["total"] += r.fee_fen
        for shown, parts in SHOWN.items():
            self.quantity[shown] += sum((getattr(r, f"q_{p}") for p in parts), ZERO)
            self.fee[shown] += sum(getattr(r, f"f_{p}") for p in parts)
        self.fee["fixed"] += r.f_fixed


@dataclass
class EnergyReport:
    site: str
    period: str
    utility: str
    rows: list[EnergyRow]
    total: EnergyRow

    @property
    def unit(self) -> str:
        return UNITS[self.utility]

    @property
    def has_fixed(self) -> bool:
        return any(r.fee["fixed"] for r in self.rows)

    def row_json(self, r: EnergyRow, *, with_place: bool = True) -> dict:
        u = self.utility
        fee_by_period = {p: yuan(r.fee[p]) for p in SHOWN_PERIODS}
        if self.has_fixed:
            fee_by_period["fixed"] = yuan(r.fee["fixed"])
        out: dict[str, Any] = {}
        if with_place:
            out.update(room=r.room, tenant=r.tenant, building=r.building, floor=r.floor)
        out.update(total=qty(r.quantity["total"], u), **{p: qty(r.quantity[p], u) for p in SHOWN_PERIODS},
                   fee=yuan(r.fee["total"]), fee_by_period=fee_by_period)
        return out

    def as_json(self) -> dict:
        return {"site": self.site, "period": self.period, "utility": self.utility, "unit": self.unit,
                "rows": [self.row_json(r) for r in self.rows], "total": self.row_json(self.total, with_place=False)}


def energy(session: Session, site: Site, period: str, *, utility: str = "electricity", building: str | None = None,
           floor: str | None = None) -> EnergyReport:
    """Per shop (account) of ``site`` for the month ``period`` (YYYY-MM): quantity in total and per
    TOU period, and the fee per period. A meter on no account (common area) is a row of its room
    with no tenant. ``building`` / ``floor`` filter by name."""
    month = parse_month(period, "period")
    utility = parse_choice(utility, tuple(UNITS), "utility")
    where = places(session, site.id)
    rows_q = (select(UsageMonth, Meter.room_id, Account.room_id.label("account_room"), Tenant.name)
              .join(Meter, Meter.id == UsageMonth.meter_id)
              .outerjoin(Account, Account.id == UsageMonth.account_id)
              .outerjoin(Tenant, Tenant.id == Account.tenant_id)
              .where(Meter.site_id == site.id, UsageMonth.month == month, UsageMonth.kind == utility))
    out: dict[tuple, EnergyRow] = {}
    total = EnergyRow("", "", "", None, None)
    for um, meter_room, account_room, tenant in session.execute(rows_q):
        room_id = account_room or meter_room
        b, f, r = where.get(room_id, ("", "", "")) if room_id else ("", "", "")
        if (building and b != building) or (floor and f != floor):
            continue
        key = (room_id, um.account_id)
        row = out.get(key)
        if row is None:
            row = out[key] = EnergyRow(r, b, f, tenant, um.account_id or None)
        row.add(um)
        total.add(um)
    rows = sorted(out.values(), key=lambda x: (natural(x.building), natural(x.floor), natural(x.room),
                                                x.account_id or 0))
    return EnergyReport(site.name, month.strftime("%Y-%m"), utility, rows, total)


# --- 能耗同比 --------------------------------------------------------------------------------

@dataclass
class YoyReport:
    site: str
    year: int
    by: str
    utility: str
    rows: list[dict]

    def as_json(self) -> dict:
        return {"site": self.site, "year": self.year, "by": self.by, "utility": self.utility,
                "unit": UNITS[self.utility], "rows": self.rows}


def yoy(session: Session, site: Site, year: str | int, *, by: str = "room", utility: str = "electricity") -> YoyReport:
    """Each month of ``year`` per room, building or the site against the same month a year before.
    A month with no billed usage rows is no data: its usage is null (this year) or
    ``usage_last_year`` and ``change_pct`` are null (last year), never 0."""
    y = parse_year(year, "year")
    by = parse_choice(by, ("room", "building", "site"), "by")
    utility = parse_choice(utility, tuple(UNITS), "utility")
    where = places(session, site.id)
    q = (select(UsageMonth.month, Meter.room_id, Account.room_id, func.sum(UsageMonth.quantity))
         .join(Meter, Meter.id == UsageMonth.meter_id)
         .outerjoin(Account, Account.id == UsageMonth.account_id)
         .where(Meter.site_id == site.id, UsageMonth.kind == utility,
                UsageMonth.month >= date(y - 1, 1, 1), UsageMonth.month <= date(y, 12, 1))
         .group_by(UsageMonth.month, Meter.room_id, Account.room_id))
    sums: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    keys: dict[str, tuple] = {}
    order: tuple
    for month, meter_room, account_room, quantity in session.execute(q):
        room_id = account_room or meter_room
        b, _f, r = where.get(room_id, ("", "", "")) if room_id else ("", "", "")
        if by == "site":
            key, order = site.name, ()
        elif by == "building":
            key, order = b, natural(b)
        else:
            key, order = r, (natural(b), natural(r))
        if not key:
            continue
        keys[key] = order
        sums[(key, month)] += Decimal(quantity)
    rows = []
    for key in sorted(keys, key=lambda k: (keys[k], k)):
        for m in range(1, 13):
            now, before = date(y, m, 1), date(y - 1, m, 1)
            usage = sums.get((key, now))
            last = sums.get((key, before))
            rows.append({"key": key, "month": now.strftime("%Y-%m"), "usage": qty(usage, utility),
                         "usage_last_year": qty(last, utility),
                         "change_pct": None if usage is None or last is None else pct(usage, last)})
    return YoyReport(site.name, y, by, utility, rows)


# --- 能耗日月年报表 ------------------------------------------------------------------------------

@dataclass
class MeterReport:
    meter: str
    kind: str
    by: str
    period: str
    rows: list[dict]
    total: Decimal

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def as_json(self) -> dict:
        return {"meter": self.meter, "unit": self.unit, "by": self.by, "period": self.period, "rows": self.rows,
                "total": qty(self.total, self.kind)}


def meter_report(session: Session, meter: Meter, by: str, period: str) -> MeterReport:
    """One meter's usage from its readings: ``by`` day (``period`` YYYY-MM: every day of the month),
    month (YYYY: every month of the year) or year (YYYY: that year). A period's usage is its last
    reading minus the last reading before it (or its own first reading, for the meter's first
    period), times the CT ratio: usage is dated by the reading that closes it, as billing dates it.
    No reading in a period: ``usage`` null, ``flag`` "gap" (the usage of a gap shows in the next
    period that has readings); an anomalous reading (below the one before it, or after a meter swap)
    in it: ``flag`` "anomaly"; otherwise ``flag`` null."""
    by = parse_choice(by, ("day", "month", "year"), "by")
    buckets: list[tuple[str, date, date]] = []
    if by == "day":
        first = parse_month(period, "period")
        d = first
        while d < next_month(first):
            buckets.append((d.isoformat(), d, d))
            d += timedelta(days=1)
    else:
        y = parse_year(period, "period")
        if by == "month":
            for m in range(1, 13):
                start = date(y, m, 1)
                buckets.append((start.strftime("%Y-%m"), start, next_month(start) - timedelta(days=1)))
        else:
            buckets.append((str(y), date(y, 1, 1), date(y, 12, 31)))
    start, end = buckets[0][1], buckets[-1][2]
    days = session.execute(select(ReadingDay).where(ReadingDay.meter_id == meter.id, ReadingDay.day >= start,
                                                    ReadingDay.day <= end).order_by(ReadingDay.day)).scalars().all()
    baseline = session.scalar(select(ReadingDay.last_total).where(
        ReadingDay.meter_id == meter.id, ReadingDay.day < start, ReadingDay.last_total.is_not(None))
        .order_by(ReadingDay.day.desc()).limit(1))
    ct = Decimal(meter.ct_ratio or 1)
    rows, total = [], ZERO
    i = 0
    last = None if baseline is None else Decimal(baseline)
    for label, b_start, b_end in buckets:
        readings = anomalies = 0
        first_total: Decimal | None = None
        last_total: Decimal | None = None
        while i < len(days) and days[i].day <= b_end:
            rd = days[i]
            if rd.day >= b_start:
                readings += rd.readings
                anomalies += rd.anomalies
                if rd.readings and rd.last_total is not None and rd.first_total is not None:
                    if first_total is None:
                        first_total = Decimal(rd.first_total)
                    last_total = Decimal(rd.last_total)
            i += 1
        usage = None
        if last_total is not None:
            base = last if last is not None else first_total
            assert base is not None  # set together with last_total
            usage = (last_total - base) * ct
            last = last_total
        flag = None
        if readings == 0 and anomalies == 0:
            flag = "gap"
        elif anomalies or (usage is not None and usage < 0):
            flag = "anomaly"
        if usage is not None:
            total += usage
        rows.append({"period": label, "usage": qty(usage, meter.kind), "flag": flag})
    return MeterReport(meter.serial, meter.kind, by, str(period), rows, total)


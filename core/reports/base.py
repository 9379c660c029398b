"""What every report shares: finding the site or meter, reading periods as people type them, and
showing quantities and money the one way (quantities half up to 0.01 kWh / 0.001 m³, money as
yuan strings from integer fen)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound, ValidationError
from core.ledger.money import format_fen
from core.models import Building, Floor, Meter, Room

UNITS = {"electricity": "kWh", "water": "m³"}
QUANTUM = {"electricity": Decimal("0.01"), "water": Decimal("0.001")}
UTILITIES = tuple(UNITS)
BY = ("day", "month", "year")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_YEAR = re.compile(r"^\d{4}$")
FIRST_YEAR, LAST_YEAR = 2000, 2099


def meter_serial(session: Session, serial: str | None) -> Meter:
    if not serial or not str(serial).strip():
        raise ValidationError("--meter: give the meter's serial", field="meter")
    meter = session.scalar(select(Meter).where(Meter.serial == str(serial).strip()))
    if meter is None:
        raise NotFound(f"no meter {serial!r}", field="meter")
    return meter


def _check_year(year: int, field: str, text: str) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValidationError(f"{field}: {text!r} is outside {FIRST_YEAR}-{LAST_YEAR}", field=field)


def parse_day(text: str | None, field: str) -> date:
    value = str(text or "").strip()
    if not _DAY.match(value):
        raise ValidationError(f"{field}: {text!r} is not a date (YYYY-MM-DD)", field=field)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field}: {text!r} is not a date (YYYY-MM-DD)", field=field) from None
    _check_year(day.year, field, value)
    return day


def parse_month(text: str | None, field: str = "period") -> date:
    value = str(text or "").strip()
    if not _MONTH.match(value) or not 1 <= int(value[5:]) <= 12:
        raise ValidationError(f"{field}: {text!r} is not a month (YYYY-MM)", field=field)
    _check_year(int(value[:4]), field, value)
    return date(int(value[:4]), int(value[5:]), 1)


def parse_year(text: str | int | None, field: str = "year") -> int:
    value = str(text if text is not None else "").strip()
    if not _YEAR.match(value):
        raise ValidationError(f"{field}: {text!r} is not a year (YYYY)", field=field)
    _check_year(int(value), field, value)
    return int(value)


def parse_choice(text: str | None, choices: tuple[str, ...], field: str, default: str | None = None) -> str:
    value = default if text is None else str(text).strip()
    if value not in choices:
        raise ValidationError(f"{field}: {text!r} is not one of {', '.join(choices)}", field=field)
    return value


def parse_range(start: str | None, end: str | None, by: str | None = None) -> tuple[date, date]:
    """``from``/``to`` as dates. A span of days (``by`` day, or a list of entries) is at most three
    years; by month or year, at most fifty."""
    a, b = parse_day(start, "from"), parse_day(end, "to")
    if a > b:
        raise ValidationError(f"from: {a} is after to: {b}", field="from")
    coarse = by in ("month", "year")
    years = 50 if coarse else 3
    if (b - a).days > years * 366:
        hint = "" if coarse else " (by month or year: 50)"
        raise ValidationError(f"from/to: at most {years} years at a time{hint}", field="to")
    return a, b


def next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def add_years(d: date, n: int) -> date:
    try:
        return d.replace(year=d.year + n)
    except ValueError:  # 29 February
        return d.replace(year=d.year + n, day=28)


@dataclass(frozen=True)
class Period:
    label: str   # "2026-03-05", "2026-03" or "2026"
    start: date  # first day in it
    end: date    # last day in it (inclusive)


def periods(start: date, end: date, by: str) -> list[Period]:
    """The days, months or years from ``start`` to ``end`` (inclusive), each clipped to the range."""
    out: list[Period] = []
    d = start
    while d <= end:
        if by == "day":
            out.append(Period(d.isoformat(), d, d))
            d += timedelta(days=1)
            continue
        if by == "month":
            nxt = next_month(d)
            label = d.strftime("%Y-%m")
        else:
            nxt = date(d.year + 1, 1, 1)
            label = str(d.year)
        out.append(Period(label, d, min(nxt - timedelta(days=1), end)))
        d = nxt
    return out


def shift(p: Period, by: str, *, years: int = 0, back: int = 0) -> Period:
    """The same period ``years`` earlier (negative) or later, or the ``back``-th one before it."""
    start, end = p.start, p.end
    if years:
        start, end = add_years(start, years), add_years(end, years)
    for _ in range(back):
        if by == "day":
            start = end = start - timedelta(days=1)
        elif by == "month":
            first = (start.replace(day=1) - timedelta(days=1)).replace(day=1)
            start, end = first, next_month(first) - timedelta(days=1)
        else:
            start, end = date(start.year - 1, 1, 1), date(start.year - 1, 12, 31)
    label = start.isoformat() if by == "day" else start.strftime("%Y-%m") if by == "month" else str(start.year)
    return Period(label, start, end)


def qty(value: Decimal | None, utility: str) -> str | None:
    if value is None:
        return None
    return str(Decimal(value).quantize(QUANTUM[utility], rounding=ROUND_HALF_UP))


def yuan(fen: int) -> str:
    return format_fen(int(fen))


def pct(part: Decimal, whole: Decimal) -> str | None:
    """(part - whole) / whole as a percentage to 0.01, half up; None when ``whole`` is 0."""
    if not whole:
        return None
    return str(((Decimal(part) - Decimal(whole)) * 100 / Decimal(whole)).quantize(Decimal("0.01"),
                                                                                rounding=ROUND_HALF_UP))


_NATURAL = re.compile(r"(\d+)")


def natural(text: str | None) -> tuple:
    """"A2" before "A10"."""
    return tuple(int(p) if p.isdigit() else p for p in _NATURAL.split(text or ""))


def places(session: Session, site_id: int) -> dict[int, tuple[str, str, str]]:
    """room id -> (building, floor, room) of a site."""
    rows = session.execute(select(Room.id, Building.name, Floor.name, Room.number)
                           .join(Floor, Floor.id == Room.floor_id).join(Building, Building.id == Floor.building_id)
                           .where(Room.site_id == site_id))
    return {rid: (b, f, r) for rid, b, f, r in rows}

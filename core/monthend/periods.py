"""Periods and days present.

A run is for a month ``YYYY-MM`` of the site's calendar. A charge scheme's period is the month, the
quarter (``YYYY-Qn``), the year (``YYYY``) or a date (``YYYY-MM-DD``, one-time); the period's key
part is that text, and it ends the journal key, so finance dates the entry at the period's start.

An account is present on a day from the local date it was opened to the local date it was closed
(both counted), or to the period's end while it is open. Two accounts of one room meeting on a
move day both count that day.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.errors import ValidationError

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Period:
    key: str      # YYYY-MM | YYYY-Qn | YYYY | YYYY-MM-DD
    start: date   # first day
    end: date     # last day (inclusive)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def month(text: str) -> Period:
    """``YYYY-MM`` -> the month; ValidationError otherwise."""
    m = MONTH.match(str(text or ""))
    if not m:
        raise ValidationError(f"period: {text!r} is not a month YYYY-MM", field="period")
    start = date(int(m.group(1)), int(m.group(2)), 1)
    return Period(text, start, next_month(start) - timedelta(days=1))


def next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_month(d: date) -> str:
    return (d.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def quarter(d: date) -> Period:
    q = (d.month - 1) // 3 + 1
    start = date(d.year, 3 * q - 2, 1)
    end = next_month(next_month(next_month(start))) - timedelta(days=1)
    return Period(f"{d.year}-Q{q}", start, end)


def year(d: date) -> Period:
    return Period(str(d.year), date(d.year, 1, 1), date(d.year, 12, 31))


def day(d: date) -> Period:
    return Period(d.isoformat(), d, d)


def local_date(at: datetime | None, tz: ZoneInfo) -> date | None:
    return None if at is None else at.astimezone(tz).date()


def days_present(opened: date, closed: date | None, period: Period) -> int:
    """Days of ``period`` an account opened on ``opened`` (closed on ``closed``, or still open) was
    there, both ends counted; 0 when it was not there at all."""
    a = max(opened, period.start)
    b = min(closed or period.end, period.end)
    return max((b - a).days + 1, 0)

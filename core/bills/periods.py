"""A bill period ``YYYY-MM``: its days and its bounds in the site's timezone."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.errors import ValidationError

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Period:
    text: str
    first: date  # first day
    last: date   # last day (inclusive)

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes: local midnight of the first day to local midnight after
        the last, in the site's timezone ``tz``."""
        z = ZoneInfo(tz)
        return (datetime.combine(self.first, time(0), z),
                datetime.combine(self.last + timedelta(days=1), time(0), z))


def parse_period(text: str) -> Period:
    m = _PERIOD.match((text or "").strip())
    if not m:
        raise ValidationError(f"period: {text!r} is not YYYY-MM", field="period")
    year, month = int(m.group(1)), int(m.group(2))
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return Period(f"{year:04d}-{month:02d}", first, nxt - timedelta(days=1))

"""Which day table applies on a date, and the period pieces of a local day.

A calendar rule matches a day when every criterion it gives matches. Among matching rules the
most specific wins (a date beats a holiday, a holiday beats a weekday rule, a weekday rule beats a
month rule); among equally specific rules the first listed wins. No rule: the default table.
Holidays are China's statutory public holidays with their in-lieu days off (chinese-calendar);
for years chinese-calendar has no data for, no day is a holiday.
"""
from __future__ import annotations

from datetime import date
from functools import lru_cache

import chinese_calendar

from core.tariffs.plan import CalendarRule, Plan, Segment

MINUTES_PER_DAY = 24 * 60


@lru_cache(maxsize=4096)
def is_public_holiday(day: date) -> bool:
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return False
    return bool(on_holiday and name is not None)


def _matches(rule: CalendarRule, day: date) -> bool:
    if rule.months is not None and day.month not in rule.months:
        return False
    if rule.weekdays is not None and day.isoweekday() not in rule.weekdays:
        return False
    if rule.dates is not None or rule.month_days is not None:
        if day not in (rule.dates or ()) and (day.month, day.day) not in (rule.month_days or ()):
            return False
    if rule.holiday is not None and is_public_holiday(day) != rule.holiday:
        return False
    return True


@lru_cache(maxsize=8192)
def table_for(plan: Plan, day: date) -> str:
    """The name of the day table that ``plan`` uses on local date ``day``."""
    best: CalendarRule | None = None
    for rule in plan.calendar:
        if _matches(rule, day) and (best is None or rule.rank < best.rank):
            best = rule
    if best is not None:
        return best.table
    assert plan.default_table is not None  # validation: a plan with day tables names its default
    return plan.default_table


@lru_cache(maxsize=1024)
def day_pieces(segments: tuple[Segment, ...]) -> tuple[tuple[int, int, str], ...]:
    """(start_minute, end_minute, period) covering the whole day. Before the first start the
    last segment's period still runs (a day table is a cycle, as meters keep it)."""
    pieces = []
    if segments[0].start_minute > 0:
        pieces.append((0, segments[0].start_minute, segments[-1].period))
    for i, seg in enumerate(segments):
        end = segments[i + 1].start_minute if i + 1 < len(segments) else MINUTES_PER_DAY
        pieces.append((seg.start_minute, end, seg.period))
    return tuple(pieces)


def guangdong_commercial_period(hour: int, month: int) -> str:
    """Guangdong commercial TOU (2021): peak 10-12 and 14-19, valley 0-8, flat otherwise; sharp (critical
    peak) 11-12 and 15-17 in July-September. The simulator books energy into the rate registers with it,
    and the demo's history follows it."""
    if 7 <= month <= 9 and (hour == 11 or 15 <= hour < 17):
        return "sharp"
    if 10 <= hour < 12 or 14 <= hour < 19:
        return "peak"
    if hour < 8:
        return "valley"
    return "flat"

"""Friendly hours (友好时段): times when automatic control never cuts supply.

A site's ``settings["friendly_hours"]`` = ``{"nights": "22:00-07:00", "weekends": false,
"holidays": true}``; missing keys fall back to ``METERPAY_FRIENDLY_NIGHTS``,
``METERPAY_FRIENDLY_WEEKENDS`` and ``METERPAY_FRIENDLY_HOLIDAYS``. Holidays are the Chinese
public holidays of ``chinese_calendar``; a weekend day made a working day (调休) is not
friendly when holidays are on. Pure functions of a time and a config: no database, no clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core import config
from core.errors import ValidationError

DEFAULT_NIGHTS = "22:00-07:00"
_HHMM = re.compile(r"\d{2}:\d{2}")


@dataclass(frozen=True)
class FriendlyHours:
    night_start: time | None  # None: nights are not friendly
    night_end: time | None
    weekends: bool
    holidays: bool


def _flag(value, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_nights(text: str | None) -> tuple[time | None, time | None]:
    """"22:00-07:00" -> (22:00, 07:00); "" or "off" -> (None, None)."""
    text = (text or "").strip()
    if text.lower() in ("", "off", "none", "0"):
        return None, None
    try:
        a, b = (part.strip() for part in text.split("-"))
        if not (_HHMM.fullmatch(a) and _HHMM.fullmatch(b)):
            raise ValueError(text)
        start, end = time.fromisoformat(a), time.fromisoformat(b)
    except ValueError:
        raise ValidationError(f"friendly nights: use HH:MM-HH:MM, got {text!r}", field="friendly_hours") from None
    if start == end:
        raise ValidationError("friendly nights: start and end must differ", field="friendly_hours")
    return start, end


def config_for(site_settings: dict | None) -> FriendlyHours:
    raw = (site_settings or {}).get("friendly_hours") or {}
    nights = raw.get("nights") if "nights" in raw else config.get("METERPAY_FRIENDLY_NIGHTS")
    start, end = parse_nights(nights)
    return FriendlyHours(start, end,
                         _flag(raw.get("weekends"), config.get("METERPAY_FRIENDLY_WEEKENDS")),
                         _flag(raw.get("holidays"), config.get("METERPAY_FRIENDLY_HOLIDAYS")))


def _holiday(d: date) -> tuple[bool, bool]:
    """(statutory holiday, adjusted working day) from chinese_calendar; (False, False) outside its years."""
    try:
        import chinese_calendar
        on_holiday, name = chinese_calendar.get_holiday_detail(d)
        workday = chinese_calendar.is_workday(d)
    except (NotImplementedError, ImportError):
        return False, False
    return bool(on_holiday and name), bool(workday and d.weekday() >= 5)


def _day_friendly(d: date, cfg: FriendlyHours) -> bool:
    holiday, adjusted_workday = _holiday(d) if cfg.holidays else (False, False)
    if holiday:
        return True
    return cfg.weekends and d.weekday() >= 5 and not adjusted_workday


def _in_night(t: time, cfg: FriendlyHours) -> bool:
    if cfg.night_start is None or cfg.night_end is None:
        return False
    if cfg.night_start < cfg.night_end:
        return cfg.night_start <= t < cfg.night_end
    return t >= cfg.night_start or t < cfg.night_end


def is_friendly(at: datetime, cfg: FriendlyHours, tz: str = "Asia/Shanghai") -> bool:
    local = at.astimezone(ZoneInfo(tz))
    return _day_friendly(local.date(), cfg) or _in_night(local.time().replace(tzinfo=None), cfg)


def next_allowed(at: datetime, cfg: FriendlyHours, tz: str = "Asia/Shanghai") -> datetime:
    """The first moment at or after ``at`` outside friendly hours (aware, same zone as ``at``)."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    for _ in range(400):  # a year of days at most; holidays last about a week
        if _day_friendly(local.date(), cfg):
            local = datetime.combine(local.date() + timedelta(days=1), time(0), zone)
            continue
        if _in_night(local.time().replace(tzinfo=None), cfg):
            assert cfg.night_end is not None  # _in_night says there is a night
            end_day = local.date() if local.time().replace(tzinfo=None) < cfg.night_end else \
                local.date() + timedelta(days=1)
            local = datetime.combine(end_day, cfg.night_end, zone)
            continue
        return local.astimezone(at.tzinfo)
    raise ValidationError("friendly hours leave no time to cut supply", field="friendly_hours")

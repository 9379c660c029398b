"""Small helpers with no domain meaning."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from core.db import utcnow  # noqa: F401  (re-exported)


def site_tz(name: str | None = None) -> ZoneInfo:
    from core.config import get_settings
    return ZoneInfo(name or get_settings().timezone)


def aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    return dt.astimezone(UTC)

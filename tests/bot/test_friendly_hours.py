"""Friendly hours as pure functions of a time and a config."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.errors import ValidationError
from core.supply.friendly_hours import config_for, is_friendly, next_allowed

SH = ZoneInfo("Asia/Shanghai")
ALL = config_for({"friendly_hours": {"nights": "22:00-07:00", "weekends": True, "holidays": True}})


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.mark.parametrize("when, friendly", [
    (sh(2026, 11, 25, 12, 0), False),    # Wednesday noon
    (sh(2026, 11, 25, 22, 0), True),     # night starts
    (sh(2026, 11, 26, 6, 59), True),
    (sh(2026, 11, 26, 7, 0), False),     # night ends
    (sh(2026, 11, 28, 12, 0), True),     # Saturday
    (sh(2026, 10, 1, 12, 0), True),      # National Day
    (sh(2026, 10, 10, 12, 0), False),    # a Saturday made a working day (调休)
])
def test_what_is_friendly(when, friendly):
    assert is_friendly(when, ALL) is friendly


def test_a_friday_night_cut_waits_for_monday_morning():
    assert next_allowed(sh(2026, 11, 27, 23, 0), ALL) == sh(2026, 11, 30, 7, 0)


def test_outside_friendly_hours_the_time_is_now():
    now = sh(2026, 11, 25, 12, 0)
    assert next_allowed(now, ALL) == now


def test_the_answer_keeps_the_zone_it_was_given():
    at = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert next_allowed(at, ALL) == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)


def test_nights_inside_one_day():
    cfg = config_for({"friendly_hours": {"nights": "12:00-14:00", "weekends": False, "holidays": False}})
    assert is_friendly(sh(2026, 11, 25, 13, 0), cfg) and not is_friendly(sh(2026, 11, 25, 14, 0), cfg)
    assert next_allowed(sh(2026, 11, 25, 13, 0), cfg) == sh(2026, 11, 25, 14, 0)


def test_environment_defaults_apply_when_the_site_says_nothing(monkeypatch):
    monkeypatch.setenv("METERPAY_FRIENDLY_NIGHTS", "off")
    monkeypatch.setenv("METERPAY_FRIENDLY_WEEKENDS", "1")
    monkeypatch.setenv("METERPAY_FRIENDLY_HOLIDAYS", "0")
    cfg = config_for({})
    assert cfg.night_start is None and cfg.weekends and not cfg.holidays
    assert not is_friendly(sh(2026, 10, 1, 12, 0), cfg)  # a Thursday, holidays off


@pytest.mark.parametrize("bad", ["22-07", "25:00-07:00", "08:00-08:00", "night"])
def test_a_bad_nights_setting_is_a_clear_error(bad):
    with pytest.raises(ValidationError):
        config_for({"friendly_hours": {"nights": bad}})

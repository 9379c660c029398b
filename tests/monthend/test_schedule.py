"""The month-end schedule: each site's month runs once, on its day and time (default 1st, 02:00 site
time), for the month before, through the periodic job table."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from core.models import JournalEntry
from core.monthend.run import due_period, run_due
from core.monthend.schemes import add_scheme
from tests.monthend.test_run_safety import FIXED

SH = ZoneInfo("Asia/Shanghai")


def test_the_periodic_table_has_the_month_end_job():
    from core.jobs import resolve
    from meterpay.periodic import periodic_jobs
    (job,) = [j for j in periodic_jobs() if j.name == "month-end-due"]
    assert resolve(job.func) is run_due and job.interval <= 3600


def test_due_period_follows_the_sites_day_and_time(garden):
    site = garden.site
    assert due_period(site, datetime(2026, 5, 1, 1, 59, tzinfo=SH)) is None
    assert due_period(site, datetime(2026, 5, 1, 2, 0, tzinfo=SH)) == "2026-04"
    assert due_period(site, datetime(2026, 5, 20, 9, 0, tzinfo=SH)) == "2026-04"
    site.settings = {"month_end": {"day": 3, "time": "08:30"}}
    assert due_period(site, datetime(2026, 5, 3, 8, 29, tzinfo=SH)) is None
    assert due_period(site, datetime(2026, 1, 3, 8, 30, tzinfo=SH)) == "2025-12"
    site.settings = {"month_end": {"enabled": False}}
    assert due_period(site, datetime(2026, 5, 20, tzinfo=SH)) is None


def test_run_due_runs_each_site_once_for_the_month_before(session, garden):
    add_scheme(session, garden.site.id, FIXED)
    session.commit()
    assert run_due(datetime(2026, 5, 1, 1, 0, tzinfo=SH)) == []
    assert run_due(datetime(2026, 5, 1, 2, 5, tzinfo=SH)) == ["Garden:2026-04"]
    entries = session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "charge"))
    assert entries == 4
    assert run_due(datetime(2026, 5, 1, 2, 10, tzinfo=SH)) == []  # done: not again
    assert run_due(datetime(2026, 6, 1, 2, 10, tzinfo=SH)) == ["Garden:2026-05"]

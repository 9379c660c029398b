"""The one table of periodic jobs (Redash's periodic_job_definitions as data).

Each row names a function by dotted path so this table imports nothing heavy. The in-process
scheduler (no Redis) and RQ's CronScheduler (``meterpay scheduler``) both read it.
"""
from __future__ import annotations

from core.jobs import PeriodicJob

PERIODIC_JOBS: list[PeriodicJob] = [
    # PeriodicJob(name, dotted function, interval seconds, queue, timeout)
]


def periodic_jobs() -> list[PeriodicJob]:
    names = [j.name for j in PERIODIC_JOBS]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate periodic job names: {sorted(dupes)}")
    return list(PERIODIC_JOBS)

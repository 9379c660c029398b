"""The one table of periodic jobs (Redash's periodic_job_definitions as data).

Each row names a function by dotted path so this table imports nothing heavy. The in-process
scheduler (no Redis) and RQ's CronScheduler (``meterpay scheduler``) both read it.
"""
from __future__ import annotations

from core.jobs import PeriodicJob

PERIODIC_JOBS: list[PeriodicJob] = [
    # PeriodicJob(name, dotted function, interval seconds, queue, timeout)
    # payments: ask providers about orders whose callback is late; settle them the same way
    PeriodicJob("payments-query-pending", "miniapp_api.jobs.query_pending", 60, "payments", 300),
    # payments: compare yesterday's provider statements with the ledger (re-running a day replaces it)
    PeriodicJob("payments-reconcile", "miniapp_api.jobs.reconcile_yesterday", 86400, "payments", 1800),
    # hardware: poll the sites whose poll slot has come (interval per site, default 15 min)
    PeriodicJob("meters-poll", "hardware.poller.poll_due", 60, "meters", 900),
    # hardware: expire, release and re-enqueue outbox commands
    PeriodicJob("meters-command-retry", "hardware.executor.retry_due", 10, "meters", 120),
    # bot/alarms: repeated balance-alarm notices whose time has come
    PeriodicJob("alarms-repeat", "core.alarms.balance.send_due_repeats", 60, "notify", 300),
    # bot/supply: cuts deferred by friendly hours or held by keep-power, looked at again
    PeriodicJob("supply-deferred-cuts", "core.supply.auto.run_due", 60, "default", 300),
    # bot: notifications whose delivery failed, tried again with backoff
    PeriodicJob("notify-retry", "bot.delivery.retry_due", 60, "notify", 300),
    # durable after-commit effects: find and fix what a lost balance_changed listener left undone
    # supply: cut for balance but above the restore line -> restore; on at or below the cut line -> cut
    PeriodicJob("supply-sweep", "core.supply.auto.sweep", 60, "default", 300),
    # meter-side: a paid recharge with no meter push gets one; a confirmed push gets its meter credit
    PeriodicJob("meter-side-sweep", "core.supply.meter_side.sweep", 60, "meters", 300),
    # supply: a relay/valve that disagrees with the desired supply is commanded again (bounded, backed off)
    PeriodicJob("supply-enforce", "core.supply.enforce.sweep", 60, "default", 300),
    # alarms: an account whose alarm level disagrees with its balance is evaluated
    PeriodicJob("alarms-sweep", "core.alarms.balance.sweep", 300, "notify", 300),
    # month end: each site's run (charges, apportionment, bills) once its day and time have come (default 1st 02:00)
    PeriodicJob("month-end-due", "core.monthend.run.run_due", 300, "billing", 3600),
    # bills: 欠费通知 of overdue postpaid bills whose day has come (schedule per site: arrears_notice)
    PeriodicJob("bills-arrears", "core.bills.arrears.send_due", 3600, "notify", 600),
    # batch: start scheduled tasks when due, follow their items, restart the engine of a dead worker
    PeriodicJob("batch-sweep", "core.batch.runner.sweep", 10, "default", 120),
]


def periodic_jobs() -> list[PeriodicJob]:
    names = [j.name for j in PERIODIC_JOBS]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate periodic job names: {sorted(dupes)}")
    return list(PERIODIC_JOBS)

"""``meterpay status``: what ``/healthz`` says, for an operator at a terminal.

Exit status 0 when every check is ok, 1 when one is not (so a cron job or a monitor can use it);
``--json`` prints the same object as ``/healthz``.
"""
from __future__ import annotations

import sys

import click

from meterpay.cli.base import cli, print_json

MARK = {"ok": "ok  ", "error": "FAIL"}


def _fmt_age(age) -> str:
    if age is None:
        return "never"
    age = float(age)
    if age < 120:
        return f"{age:.0f}s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.1f} h ago"


def render(body: dict) -> list[str]:
    """The health object as lines of text (one per check, details indented)."""
    lines = [f"meterpay status: {body['status'].upper()}  ({body.get('time', '')}, {body.get('checked_in_ms')} ms)"]

    def row(key: str, summary: str) -> None:
        part = body.get(key) or {}
        mark = MARK.get(part.get("status", "error"), "FAIL")
        lines.append(f"  [{mark}] {key:<10} {summary}")
        if part.get("error"):
            lines.append(f"             {part['error']}")

    db = body.get("database", {})
    row("database", db.get("dialect", ""))
    redis = body.get("redis", {})
    row("redis", redis.get("backend", "reachable" if redis.get("status") == "ok" else ""))
    queue = body.get("queue", {})
    queued = queue.get("queued") or {}
    row("queue", ", ".join(f"{q} {n}" for q, n in queued.items()) + (f" (max {queue['max']})" if "max" in queue
                                                                       else queue.get("backend", "")))
    workers = body.get("workers", {})
    per_queue = workers.get("per_queue") or {}
    row("workers", ", ".join(f"{q} {n}" for q, n in per_queue.items()) or workers.get("backend", ""))
    sched = body.get("scheduler", {})
    if "heartbeat_age_s" in sched:
        row("scheduler", f"last heartbeat {_fmt_age(sched['heartbeat_age_s'])} (stale after "
                         f"{sched['stale_after_s']}s), {sched.get('schedulers', 0)} running")
    else:
        row("scheduler", sched.get("backend", ""))
    cmds = body.get("commands", {})
    if "pending" in cmds:
        row("commands", f"{cmds['pending']} pending, oldest requested {_fmt_age(cmds['oldest_pending_age_s'])}, "
                        f"most overdue {cmds['most_overdue_s'] or 0:.0f}s (max {cmds['max_overdue_s']}s)")
    else:
        row("commands", "")
    polling = body.get("polling", {})
    sites = polling.get("sites") or {}
    row("polling", f"{len(sites)} site(s) with gateways, {len(polling.get('late', []))} late")
    for name, info in sorted(sites.items()):
        flag = "LATE" if info["late"] else "    "
        lines.append(f"         {flag} {name}: last round {_fmt_age(info['last_round_age_s'])}, every "
                     f"{info['interval_s'] // 60} min, {info['gateways']} gateway(s)")
    return lines


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="the /healthz object as JSON")
def status(as_json: bool) -> None:
    """Database, Redis, queues, workers, scheduler heartbeat, pending commands and polling per site;
    exit 1 when anything is out of bounds (the same checks as /healthz)."""
    from meterpay import health
    body = health.collect()
    if as_json:
        print_json(body)
    else:
        click.echo("\n".join(render(body)))
    sys.exit(0 if body["status"] == "ok" else 1)

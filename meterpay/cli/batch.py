"""``meterpay batch create|show|run|cancel|retry``: batch tasks (批量操作任务) from the terminal.

    meterpay batch create --site NAME --action ACTION [--rooms FILE | --all | --building B | --floor B:F]
                          [--params JSON] [--at "YYYY-MM-DD HH:MM"] [--json]
    meterpay batch show ID [--json]
    meterpay batch run ID          start a scheduled task now (nothing for one that ran)
    meterpay batch cancel ID       cancel a task not started yet; stop a running one
    meterpay batch retry ID --failed

The operator at the terminal is the confirmation step of money and supply actions: a task made
here is confirmed by its creator (audited as ``cli:<user>``) and starts by itself (now, or at --at).
"""
from __future__ import annotations

import getpass
import json

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@cli.group()
def batch() -> None:
    """Batch tasks: one action over many rooms, now or at a set time."""


@batch.command("create")
@click.option("--site", "site_name", required=True, help="site name")
@click.option("--action", required=True, help="set_tariff, set_meter_prices, relay_off, relay_on, keep_power_on, "
              "keep_power_off, set_alarms, sync_clock, recharge, charge")
@click.option("--rooms", "rooms_file", type=click.Path(dir_okay=False), default=None,
              help=".csv/.xlsx with a room column (and amount for recharge), or .txt one room per line")
@click.option("--all", "all_rooms", is_flag=True, help="every room of the site")
@click.option("--building", "buildings", multiple=True, help="building name as imported (repeatable)")
@click.option("--floor", "floors", multiple=True, help="BUILDING:FLOOR as imported, e.g. A:3 (repeatable)")
@click.option("--status", default=None, help="only rooms the monitor shows so, e.g. arrears")
@click.option("--params", "params_text", default=None, help="JSON, e.g. '{\"amount\": \"20.00\"}'")
@click.option("--at", default=None, help="\"YYYY-MM-DD HH:MM\" in the site's timezone (default: now)")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def create(site_name, action, rooms_file, all_rooms, buildings, floors, status, params_text, at, as_json):
    """Create a task; it starts by itself (now, or at --at)."""
    from core.batch import tasks
    from core.batch.selection import parse_floor, parse_rooms_file
    from core.db import session_scope
    from core.models.site import site_named
    if not (rooms_file or all_rooms or buildings or floors or status):
        fail("choose the rooms: --rooms FILE, --all, --building B or --floor B:F")
    try:
        params = json.loads(params_text) if params_text else {}
    except json.JSONDecodeError as exc:
        fail(f"--params: not valid JSON ({exc.msg})")
    if not isinstance(params, dict):
        fail("--params: a JSON object, e.g. '{\"amount\": \"20.00\"}'")
    selection: dict = {}
    if all_rooms:
        selection["all"] = True
    if buildings:
        selection["buildings"] = list(buildings)
    if floors:
        selection["floors"] = [list(parse_floor(f)) for f in floors]
    if status:
        selection["status"] = status
    room_list = None
    if rooms_file:
        with open(rooms_file, "rb") as fh:
            room_list = parse_rooms_file(rooms_file, fh.read())
        selection["file"] = rooms_file
    with session_scope() as s:
        site = site_named(s, site_name)
        task = tasks.create_task(s, site_id=site.id, action=action, selection=selection, params=params, at=at,
                                 actor=_actor(), front="cli", confirmed=True, rooms_file=room_list)
        out = {"id": task.id, "items": task.item_count, "scheduled_at": tasks.format_at(task.scheduled_at, site),
               "state": task.state}
    if as_json:
        print_json(out)
    else:
        when = f"at {out['scheduled_at']}" if out["scheduled_at"] else "now"
        click.echo(f"batch task {out['id']}: {action}, {out['items']} items, starts {when}")


@batch.command("show")
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def show(task_id, as_json):
    """A task's state, counts and items."""
    from core.batch import tasks
    from core.db import session_scope
    with session_scope() as s:
        out = tasks.show(s, task_id)
    if as_json:
        print_json(out)
        return
    click.echo(f"batch task {out['id']} ({out['site']}): {out['what']} — {out['state']}"
               + (f", scheduled {out['scheduled_at']}" if out["scheduled_at"] else ""))
    click.echo("  " + "  ".join(f"{k} {v}" for k, v in out["counts"].items()))
    for it in out["items"]:
        click.echo(f"  {it['item']:>5}  {it['room']:<10} {it['meter'] or '-':<16} {it['state']:<10} {it['reason']}")


@batch.command("run")
@click.argument("task_id", type=int)
@friendly_errors
def run(task_id):
    """Start a scheduled task now; a task that already ran is left as it is."""
    from core.batch import tasks
    from core.db import session_scope
    with session_scope() as s:
        started = tasks.run_now(s, task_id, actor=_actor(), front="cli")
        state = tasks.get_task(s, task_id).state
    click.echo(f"batch task {task_id}: " + ("starts now" if started else f"already {state}; nothing done"))


@batch.command("cancel")
@click.argument("task_id", type=int)
@friendly_errors
def cancel(task_id):
    """Cancel a task that has not started; stop a running one (items in flight finish)."""
    from core.batch import tasks
    from core.db import session_scope
    with session_scope() as s:
        state = tasks.cancel(s, task_id, actor=_actor(), front="cli")
    click.echo(f"batch task {task_id}: {state}")


@batch.command("retry")
@click.argument("task_id", type=int)
@click.option("--failed", "failed_only", is_flag=True, help="only the failed items (default: every item that "
              "did not succeed: failed, skipped, cancelled)")
@friendly_errors
def retry(task_id, failed_only):
    """Run the items that did not succeed again; a succeeded item is never repeated."""
    from core.batch import tasks
    from core.db import session_scope
    with session_scope() as s:
        n = tasks.retry(s, task_id, failed_only=failed_only, actor=_actor(), front="cli")
    click.echo(f"batch task {task_id}: {n} item(s) queued again")

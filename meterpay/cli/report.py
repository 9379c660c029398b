"""``meterpay report income|energy|yoy|meter|orders|rebuild``: finance and reports from the ledger.

Each report prints a table, ``--json`` (amounts as yuan strings, quantities as decimal strings) or
writes ``--xlsx FILE``. Options are plain text checked by core, so bad input (an unknown site or
meter, a malformed period, ``--from`` after ``--to``) is one line ``error: ...`` and exit 2, never
click's own message. See docs/reports.md.
"""
from __future__ import annotations

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json


@cli.group()
def report() -> None:
    """Finance and energy reports (read from the ledger and readings)."""


def _required(**values) -> None:
    for name, value in values.items():
        if value is None or not str(value).strip():
            fail(f"--{name.replace('_', '-')} is required")


def _output(obj, as_json: bool, xlsx: str | None, write_xlsx, lines) -> None:
    if as_json and xlsx:
        fail("give --json or --xlsx, not both")
    if xlsx:
        write_xlsx(obj, xlsx)
        click.echo(f"wrote {xlsx}")
    elif as_json:
        print_json(obj.as_json())
    else:
        for line in lines(obj):
            click.echo(line)


def _json_xlsx(fn):
    fn = click.option("--xlsx", "xlsx", default=None, metavar="FILE", help="write an .xlsx workbook")(fn)
    return click.option("--json", "as_json", is_flag=True, help="print JSON")(fn)


@report.command("income")
@click.option("--site", default=None, help="site name")
@click.option("--from", "start", default=None, metavar="YYYY-MM-DD")
@click.option("--to", "end", default=None, metavar="YYYY-MM-DD")
@click.option("--by", default="day", show_default=True, metavar="day|month|year")
@_json_xlsx
@friendly_errors
def income_cmd(site, start, end, by, as_json, xlsx) -> None:
    """收入概况: income by composition, cash in by channel and refunds per day, month or year."""
    from core.db import session_scope
    from core.models.site import site_named
    from core.reports import base, export, finance
    _required(site=site, **{"from": start, "to": end})
    with session_scope() as s:
        a, b = base.parse_range(start, end, by)
        rep = finance.income(s, site_named(s, site), a, b, by)

    def lines(r):
        yield f"{'period':<12}{'income':>14}{'cash in':>14}{'refunds':>12}"
        for row in [*r.rows, r.total]:
            yield (f"{row.period:<12}{base.yuan(row.income.get('total', 0)):>14}"
                   f"{base.yuan(row.cash_in.get('total', 0)):>14}{base.yuan(row.refunds):>12}")
    _output(rep, as_json, xlsx, export.income_xlsx, lines)


@report.command("energy")
@click.option("--site", default=None)
@click.option("--period", default=None, metavar="YYYY-MM")
@click.option("--utility", default="electricity", show_default=True, metavar="electricity|water")
@click.option("--building", default=None, help="only this building")
@click.option("--floor", default=None, help="only this floor")
@_json_xlsx
@friendly_errors
def energy_cmd(site, period, utility, building, floor, as_json, xlsx) -> None:
    """用电综合报表 (water: 用水): per shop, total and per TOU period, with fees."""
    from core.db import session_scope
    from core.models.site import site_named
    from core.reports import energy, export
    _required(site=site, period=period)
    with session_scope() as s:
        rep = energy.energy(s, site_named(s, site), period, utility=utility, building=building, floor=floor)

    def lines(r):
        yield f"{'room':<10}{'tenant':<16}{'total':>12}{'sharp':>10}{'peak':>10}{'flat':>10}{'valley':>10}{'fee':>12}"
        for row in [*r.rows, r.total]:
            j = r.row_json(row)
            yield (f"{(j['room'] or '-') if row is not r.total else 'total':<10}{(j['tenant'] or '')[:15]:<16}"
                   f"{j['total']:>12}{j['sharp']:>10}{j['peak']:>10}{j['flat']:>10}{j['valley']:>10}{j['fee']:>12}")
    _output(rep, as_json, xlsx, export.energy_xlsx, lines)


@report.command("yoy")
@click.option("--site", default=None)
@click.option("--year", default=None, metavar="YYYY")
@click.option("--by", default="room", show_default=True, metavar="room|building|site")
@click.option("--utility", default="electricity", show_default=True, metavar="electricity|water")
@_json_xlsx
@friendly_errors
def yoy_cmd(site, year, by, utility, as_json, xlsx) -> None:
    """能耗同比: each month against the same month last year (null where last year has no data)."""
    from core.db import session_scope
    from core.models.site import site_named
    from core.reports import energy, export
    _required(site=site, year=year)
    with session_scope() as s:
        rep = energy.yoy(s, site_named(s, site), year, by=by, utility=utility)

    def lines(r):
        yield f"{'key':<12}{'month':<9}{'usage':>12}{'last year':>12}{'change %':>10}"
        for row in r.rows:
            yield (f"{row['key']:<12}{row['month']:<9}{row['usage'] or '-':>12}{row['usage_last_year'] or '-':>12}"
                   f"{row['change_pct'] or '-':>10}")
    _output(rep, as_json, xlsx, export.yoy_xlsx, lines)


@report.command("meter")
@click.option("--meter", default=None, help="meter serial")
@click.option("--by", default=None, metavar="day|month|year")
@click.option("--period", default=None, metavar="YYYY[-MM]", help="by day: the month; by month or year: the year")
@_json_xlsx
@friendly_errors
def meter_cmd(meter, by, period, as_json, xlsx) -> None:
    """能耗日月年报表: one meter's usage from its readings, gaps and anomalies marked."""
    from core.db import session_scope
    from core.reports import base, energy, export
    _required(meter=meter, by=by, period=period)
    with session_scope() as s:
        rep = energy.meter_report(s, base.meter_serial(s, meter), by, period)

    def lines(r):
        yield f"meter {r.meter} ({r.unit})"
        for row in r.rows:
            yield f"{row['period']:<12}{row['usage'] or '-':>12}  {row['flag'] or ''}"
        yield f"{'total':<12}{base.qty(r.total, r.kind):>12}"
    _output(rep, as_json, xlsx, export.meter_xlsx, lines)


@report.command("orders")
@click.option("--site", default=None)
@click.option("--from", "start", default=None, metavar="YYYY-MM-DD")
@click.option("--to", "end", default=None, metavar="YYYY-MM-DD")
@click.option("--kind", default=None, help="recharge, refund, charge, apportionment, payment, adjustment, "
                                           "settlement, reversal, opening, consumption")
@click.option("--channel", default=None, metavar="wechat|alipay|cash|transfer|wallet")
@click.option("--state", default=None)
@click.option("--building", default=None)
@click.option("--room", default=None)
@click.option("--tenant", default=None, help="part of the tenant's name")
@_json_xlsx
@friendly_errors
def orders_cmd(site, start, end, kind, channel, state, building, room, tenant, as_json, xlsx) -> None:
    """订单总览: every money flow of a site, filtered, with its total."""
    from core.db import session_scope
    from core.models.site import site_named
    from core.reports import base, export, finance
    _required(site=site, **{"from": start, "to": end})
    with session_scope() as s:
        a, b = base.parse_range(start, end)
        rep = finance.orders(s, site_named(s, site), a, b, kind=kind, channel=channel, state=state,
                             building=building, room=room, tenant=tenant)

    def lines(r):
        for row in r.rows:
            yield (f"{row.time:%Y-%m-%d %H:%M}  {row.room:<8}{row.tenant[:14]:<15}{row.kind:<14}{row.channel:<9}"
                   f"{base.yuan(row.amount_fen):>12}  {row.state:<10} #{row.entry_id} {row.provider_txn_id or ''}")
        yield f"{len(r.rows)} rows, total {base.yuan(r.total_fen)}"
    _output(rep, as_json, xlsx, export.orders_xlsx, lines)


@report.command("rebuild")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def rebuild_cmd(as_json) -> None:
    """Recompute every report rollup from the raw rows (after a restore, or on a database that held
    data before the rollups existed). Run it while nothing ingests or posts."""
    from core.db import session_scope
    from core.reports.derive import rebuild
    with session_scope() as s:
        counts = rebuild(s)
    if as_json:
        print_json(counts)
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))

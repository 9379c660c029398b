"""``meterpay bills list|confirm|export``: postpaid bills of a site and period (issue 12).

- ``bills list --site NAME --period YYYY-MM [--state draft|confirmed|paid|overdue] [--json]``
- ``bills confirm --site NAME --period YYYY-MM``: every draft of the period; exit 0 when none is left
- ``bills export --site NAME --period YYYY-MM --out FILE.xlsx [--arrears]``

Bad input (an unknown site, a malformed period or state) is one line ``error: ...`` and exit 2.
See docs/bills.md.
"""
from __future__ import annotations

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json


@cli.group()
def bills() -> None:
    """Postpaid bills: list, confirm, export."""


def _required(**values) -> None:
    for name, value in values.items():
        if value is None or not str(value).strip():
            fail(f"--{name} is required")


@bills.command("list")
@click.option("--site", default=None, help="site name")
@click.option("--period", default=None, metavar="YYYY-MM")
@click.option("--state", default=None, metavar="draft|confirmed|paid|overdue",
              help="confirmed: owed (confirmed or partly paid); overdue: owed past the due date")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@friendly_errors
def list_cmd(site, period, state, as_json) -> None:
    """The bills of a site and period."""
    from core.bills import service
    from core.db import session_scope
    from core.ledger.money import format_fen
    from core.models.site import site_named
    _required(site=site, period=period)
    with session_scope() as s:
        st = site_named(s, site)
        rows = service.list_bills(s, st, period, state=state, with_lines=as_json)
        if as_json:
            print_json({"site": st.name, "period": period.strip(), "count": len(rows),
                        "total": format_fen(sum(r.bill.total_fen for r in rows)),
                        "open": format_fen(sum(r.bill.open_fen for r in rows)),
                        "bills": [r.as_json() for r in rows]})
            return
        today = service.site_today(st)
        for r in rows:
            b = r.bill
            click.echo(f"{b.bill_no}  {r.building}-{r.room:<8} {r.tenant:<12} {service.shown_state(b, today):<12}"
                       f" total {format_fen(b.total_fen):>10}  open {format_fen(b.open_fen):>10}"
                       f"  due {b.due_date or '-'}")
        click.echo(f"{len(rows)} bill(s), total {format_fen(sum(r.bill.total_fen for r in rows))}, "
                   f"open {format_fen(sum(r.bill.open_fen for r in rows))}")


@bills.command("confirm")
@click.option("--site", default=None, help="site name")
@click.option("--period", default=None, metavar="YYYY-MM")
@click.option("--as", "actor", default="cli", show_default=True, help="who confirms (audit log)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@friendly_errors
def confirm_cmd(site, period, actor, as_json) -> None:
    """Confirm every draft bill of a site and period: each posts its receivable once."""
    from core.bills import service
    from core.db import session_scope
    from core.ledger.money import format_fen
    from core.models.site import site_named
    _required(site=site, period=period)
    with session_scope() as s:
        st = site_named(s, site)
        done = service.confirm(s, st.id, period, actor=actor, front="cli")
    if as_json:
        print_json({"confirmed": done.count, "total": format_fen(done.total_fen), "bills": done.bill_nos})
    else:
        click.echo(f"confirmed {done.count} bill(s), total {format_fen(done.total_fen)}")


@bills.command("export")
@click.option("--site", default=None, help="site name")
@click.option("--period", default=None, metavar="YYYY-MM")
@click.option("--out", default=None, metavar="FILE.xlsx")
@click.option("--arrears", is_flag=True, help="only the owed bills (欠费清单)")
@friendly_errors
def export_cmd(site, period, out, arrears) -> None:
    """The bills (or the arrears list) of a site and period as .xlsx with Chinese headers."""
    from core.bills import export, service
    from core.db import session_scope
    from core.models.site import site_named
    _required(site=site, period=period, out=out)
    with session_scope() as s:
        st = site_named(s, site)
        if arrears:
            rows = service.list_bills(s, st, period, state="confirmed", with_lines=False)
            export.arrears_xlsx(rows, out)
        else:
            export.bills_xlsx(service.list_bills(s, st, period), out)
    click.echo(f"wrote {out}")


@bills.command("pdf")
@click.argument("bill_no")
@click.option("--out", default=None, metavar="FILE.pdf", help="where to write it (default: BILL_NO.pdf)")
@friendly_errors
def pdf_cmd(bill_no, out) -> None:
    """One bill (or credit note) as a printable A4 PDF."""
    from core.bills import service
    from core.bills.pdf import bill_pdf
    from core.db import session_scope
    with session_scope() as s:
        d = service.detail(s, bill_no)
        today = service.site_today(d.site)
        data = bill_pdf(d, service.shown_state(d.row.bill, today), printed=today)
    out = out or f"{d.row.bill.bill_no}.pdf"
    with open(out, "wb") as fh:
        fh.write(data)
    click.echo(f"wrote {out}")

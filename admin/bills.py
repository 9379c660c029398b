"""账单管理 (issue 12, postpaid bills): the bill list of a site and period with confirm and export, and a
printable bill page with desk payment (cash, transfer, from the wallet) and credit notes. Every action
is one call of ``core.bills.service``; forms that move money carry an op key, so a form sent twice acts
once."""
from __future__ import annotations

import io
from datetime import date, datetime, timedelta

from flask import abort, flash, redirect, request, send_file, url_for
from flask_babel import gettext as _

from admin.web import actor, bp, can_write, db, new_op, op_key, render, require_write, site_or_404, visible_sites
from core.bills import export, service
from core.errors import MeterpayError, ValidationError
from core.ledger.money import format_fen, parse_yuan
from core.reports.rollups import zone

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def default_period(site) -> str:
    """The newest month with bills, else last month (the month-end run bills the month just ended)."""
    from sqlalchemy import func, select

    from core.models import Bill
    newest = db().scalar(select(func.max(Bill.period)).where(Bill.site_id == site.id))
    if newest:
        return newest
    first = datetime.now(zone(site.timezone)).date().replace(day=1)
    return f"{first - timedelta(days=1):%Y-%m}"


def _period(site) -> str:
    return (request.values.get("period") or "").strip() or default_period(site)


@bp.get("/sites/<int:site_id>/bills")
def bills(site_id: int):
    site = site_or_404(site_id)
    period = _period(site)
    state = (request.args.get("state") or "").strip() or None
    try:
        rows = service.list_bills(db(), site, period, state=state, with_lines=False)
        error = None
    except MeterpayError as exc:
        rows, error = [], exc.message
    drafts = sum(1 for r in rows if r.bill.state == "draft")
    totals = {"total": sum(r.bill.total_fen for r in rows), "paid": sum(r.bill.paid_fen for r in rows),
              "open": sum(r.bill.open_fen for r in rows)}
    return render("bills.html", 200 if error is None else 400, site=site, sites=visible_sites(), rows=rows[:1000],
                  count=len(rows), period=period, state=state, drafts=drafts, totals=totals, error=error,
                  states=service.STATE_FILTERS, state_names=service.STATE_NAMES, writable=can_write(site.id))


@bp.post("/sites/<int:site_id>/bills/confirm")
def bills_confirm(site_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    period = _period(site)
    session = db()
    try:
        done = service.confirm(session, site.id, period, actor=actor(), front="admin")
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        flash(exc.message, "err")
        return redirect(url_for("admin.bills", site_id=site.id, period=period), code=303)
    flash(_("已确认 %(n)s 张账单，合计 ¥%(amount)s", n=done.count, amount=format_fen(done.total_fen)), "ok")
    return redirect(url_for("admin.bills", site_id=site.id, period=period), code=303)


@bp.get("/sites/<int:site_id>/bills.xlsx")
def bills_xlsx(site_id: int):
    site = site_or_404(site_id)
    period = _period(site)
    arrears = request.args.get("arrears") == "1"
    try:
        rows = service.list_bills(db(), site, period, state="confirmed" if arrears else None, with_lines=not arrears)
    except MeterpayError:
        abort(400)
    buf = io.BytesIO()
    (export.arrears_xlsx if arrears else export.bills_xlsx)(rows, buf)
    buf.seek(0)
    name = f"{'arrears' if arrears else 'bills'}-{period}.xlsx"
    return send_file(buf, mimetype=XLSX, as_attachment=True, download_name=name)


def _bill_or_404(bill_no: str):
    try:
        bill = service.get_bill(db(), bill_no)
    except MeterpayError:
        abort(404)
    site_or_404(bill.site_id)
    return bill


def _page(bill_no: str, status: int = 200, error: str | None = None):
    bill = _bill_or_404(bill_no)
    d = service.detail(db(), bill.bill_no)
    today = service.site_today(d.site)
    return render("bill.html", status, site=d.site, sites=visible_sites(), d=d, bill=d.row.bill, row=d.row,
                  shown_state=service.shown_state(d.row.bill, today), state_names=service.STATE_NAMES,
                  kind_names=service.KIND_NAMES, op=new_op(), writable=can_write(d.site.id), error=error,
                  printed=date.today())


@bp.get("/bills/<bill_no>")
def bill(bill_no: str):
    return _page(bill_no)


@bp.get("/bills/<bill_no>.pdf")
def bill_pdf(bill_no: str):
    """The printable bill as an A4 PDF (the same sheet as the page)."""
    from core.bills.pdf import bill_pdf as render_pdf
    bill = _bill_or_404(bill_no)
    d = service.detail(db(), bill.bill_no)
    today = service.site_today(d.site)
    data = render_pdf(d, service.shown_state(d.row.bill, today), printed=today)
    return send_file(io.BytesIO(data), mimetype="application/pdf", as_attachment=False,
                     download_name=f"{bill.bill_no}.pdf")


def _act(bill_no: str, fn) -> tuple:
    bill = _bill_or_404(bill_no)
    require_write(bill.site_id)
    session = db()
    try:
        message = fn(bill)
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        return _page(bill.bill_no, exc.http_status, exc.message)
    flash(message, "ok")
    return redirect(url_for("admin.bill", bill_no=bill.bill_no), code=303)


@bp.post("/bills/<bill_no>/confirm")
def bill_confirm(bill_no: str):
    def run(bill):
        done = service.confirm_one(db(), bill.bill_no, actor=actor(), front="admin")
        return _("已确认账单") if done.count else _("账单已确认过")
    return _act(bill_no, run)


@bp.post("/bills/<bill_no>/pay")
def bill_pay(bill_no: str):
    def run(bill):
        amount = parse_yuan(request.form.get("amount", ""), field="amount")
        method = request.form.get("method", "")
        service.pay_at_desk(db(), bill.bill_no, amount, method=method, key=op_key("bill-pay"), actor=actor(),
                            front="admin")
        return _("已收款 ¥%(amount)s", amount=format_fen(amount))
    return _act(bill_no, run)


@bp.post("/bills/<bill_no>/credit")
def bill_credit(bill_no: str):
    def run(bill):
        amount = parse_yuan(request.form.get("amount", ""), field="amount")
        try:
            line_no = int(request.form.get("line", ""))
        except ValueError:
            raise ValidationError(_("请选择要冲减的账单行"), field="line") from None
        credit = service.credit_note(db(), bill.bill_no, line_no, amount, reason=request.form.get("reason", "")[:200],
                                     actor=actor(), front="admin", key=op_key("bill-credit"))
        return _("已开冲减单 %(no)s", no=credit.bill_no)
    return _act(bill_no, run)

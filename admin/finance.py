"""财务管理: 订单总览 (every money flow of a site, filtered, with totals) and 收入概况 (income by
composition and cash in by channel per day, month or year, against the period before and the same
period last year). Each page renders its table, draws its chart from the JSON under ``/admin/api``
and exports .xlsx; all of it is ``core.reports.finance`` (the same numbers as ``meterpay report``)."""
from __future__ import annotations

import io
from datetime import date, datetime

from flask import abort, jsonify, request, send_file
from flask_babel import gettext as _
from sqlalchemy import select

from admin.web import bp, db, render, room_or_404, site_or_404, visible_sites
from core.errors import MeterpayError
from core.models import Account, JournalEntry, LedgerAccount, PaymentOrder, PaymentRefund, Posting
from core.reports import base, export, finance
from core.reports.rollups import zone

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ORDER_FILTERS = ("kind", "channel", "state", "building", "room", "tenant")


def today(site) -> date:
    return datetime.now(zone(site.timezone)).date()


def date_range(site) -> tuple[str, str]:
    """The range asked for, as typed (checked by core); this month so far by default."""
    t = today(site)
    return request.args.get("from") or t.replace(day=1).isoformat(), request.args.get("to") or t.isoformat()


def xlsx_response(write, report, name: str):
    buf = io.BytesIO()
    write(report, buf)
    buf.seek(0)
    return send_file(buf, mimetype=XLSX, as_attachment=True, download_name=name)


# --- 订单总览 ---------------------------------------------------------------------------------

def _orders(site):
    start, end = date_range(site)
    a, b = base.parse_range(start, end)
    filters = {k: (request.args.get(k) or "").strip() or None for k in ORDER_FILTERS}
    return finance.orders(db(), site, a, b, **filters), {"from": start, "to": end, **filters}


@bp.get("/sites/<int:site_id>/finance/orders")
def finance_orders(site_id: int):
    site = site_or_404(site_id)
    try:
        report, args = _orders(site)
        error = None
    except MeterpayError as exc:
        report, error = None, exc.message
        args = {"from": request.args.get("from", ""), "to": request.args.get("to", ""),
                **{k: request.args.get(k) for k in ORDER_FILTERS}}
    rows = report.rows[:500] if report else []
    places = base.places(db(), site.id)
    return render("finance_orders.html", site=site, sites=visible_sites(), report=report, rows=rows, args=args,
                  error=error, kinds=finance.ORDER_KINDS, channels=finance.ORDER_CHANNELS,
                  buildings=sorted({p[0] for p in places.values()}, key=base.natural))


@bp.get("/api/sites/<int:site_id>/orders")
def api_orders(site_id: int):
    report, _args = _orders(site_or_404(site_id))
    return jsonify(report.as_json())


@bp.get("/sites/<int:site_id>/finance/orders.xlsx")
def finance_orders_xlsx(site_id: int):
    site = site_or_404(site_id)
    report, args = _orders(site)
    return xlsx_response(export.orders_xlsx, report, f"orders-{args['from']}-{args['to']}.xlsx")


# --- 收入概况 ---------------------------------------------------------------------------------

def _income(site):
    start, end = date_range(site)
    by = request.args.get("by") or "day"
    a, b = base.parse_range(start, end, by)
    return finance.income(db(), site, a, b, by), {"from": start, "to": end, "by": by}


@bp.get("/sites/<int:site_id>/finance/income")
def finance_income(site_id: int):
    site = site_or_404(site_id)
    try:
        report, args = _income(site)
        compared = {c["period"]: c for c in finance.compare(db(), site, report)}
        error = None
    except MeterpayError as exc:
        report, compared, error = None, {}, exc.message
        args = {k: request.args.get(k, "") for k in ("from", "to", "by")}
    return render("finance_income.html", site=site, sites=visible_sites(), report=report, compared=compared,
                  args=args, error=error, channels=finance.CHANNELS)


@bp.get("/api/sites/<int:site_id>/income")
def api_income(site_id: int):
    """The income report as ``meterpay report income --json`` prints it, plus ``compare``: each
    period's income and cash in (fen) against the period before and the same period last year."""
    site = site_or_404(site_id)
    report, _args = _income(site)
    return jsonify({**report.as_json(), "charge_codes": report.charge_codes,
                    "compare": finance.compare(db(), site, report)})


@bp.get("/sites/<int:site_id>/finance/income.xlsx")
def finance_income_xlsx(site_id: int):
    report, args = _income(site_or_404(site_id))
    return xlsx_response(export.income_xlsx, report, f"income-{args['from']}-{args['to']}.xlsx")


def labels() -> dict:
    """Names of the income parts and channels in the manager's language (the chart's legend)."""
    return {"electricity": _("电费"), "water": _("水费"), "apportion": _("公摊"), "other": _("其他"),
            "wechat": _("微信"), "alipay": _("支付宝"), "cash": _("现金"), "transfer": _("转账"), "wallet": _("余额")}


# --- one entry (订单总览 links each line here) ----------------------------------------------------

@bp.get("/entries/<int:entry_id>")
def finance_entry(entry_id: int):
    """A journal entry as the ledger holds it: key, kind, memo, time, its postings, and the payment
    order or refund behind it (with the provider's transaction id)."""
    session = db()
    entry = session.get(JournalEntry, entry_id)
    account = session.get(Account, entry.account_id) if entry is not None and entry.account_id else None
    if entry is None or account is None:
        abort(404)
    room = room_or_404(account.room_id)
    site = site_or_404(account.site_id)
    postings = session.execute(select(LedgerAccount.code, Posting.amount_fen)
                               .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
                               .where(Posting.entry_id == entry.id).order_by(Posting.id)).all()
    meta = entry.meta or {}
    order = session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == str(meta["order_no"]))) \
        if meta.get("order_no") else None
    refund = session.scalar(select(PaymentRefund).where(PaymentRefund.entry_id == entry.id))
    refund_order = session.get(PaymentOrder, refund.order_id) if refund is not None else None
    reversal = session.scalar(select(JournalEntry).where(JournalEntry.reverses_id == entry.id))
    return render("finance_entry.html", site=site, sites=visible_sites(), entry=entry, room=room, account=account,
                  postings=postings, order=order, refund=refund, refund_order=refund_order, reversal=reversal)

"""Payment jobs: query orders whose callback got lost, send refunds and settle their outcome, reconcile each day.

Periodic rows in meterpay/periodic.py: ``payments-query-pending`` (every minute) and
``payments-reconcile`` (daily, yesterday's statements; re-running a day replaces its report).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.config import get_settings
from core.db import new_session, session_scope
from core.jobs import job
from core.models import PaymentOrder, PaymentRefund
from core.models.payment import OPEN_REFUND_STATES
from core.payments import orders as payments
from core.payments.provider import ProviderError, RefundReport, channels, get_provider
from core.utils import utcnow
from miniapp_api import providers as _providers  # noqa: F401 - registers the providers
from miniapp_api import settings as cfg
from miniapp_api.settings import NotConfigured

log = logging.getLogger(__name__)


@job("payments")
def query_pending(older_than_seconds: int | None = None) -> dict:
    """Ask the provider about every order still pending after a few minutes, and every refund still open
    (requested, pending, unknown, abnormal); apply what it says."""
    older = timedelta(seconds=cfg.pending_after_seconds() if older_than_seconds is None else older_than_seconds)
    with new_session() as session:
        order_nos = payments.pending_orders(session, older_than=older)
        refund_nos = list(session.scalars(select(PaymentRefund.refund_no).where(
            PaymentRefund.state.in_(OPEN_REFUND_STATES), PaymentRefund.created_at <= utcnow() - older)
            .order_by(PaymentRefund.id)))
    outcomes: dict[str, int] = {}
    for no in order_nos:
        outcome = settle_by_query(no)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for no in refund_nos:
        state = refund_by_query(no)
        outcomes[f"refund-{state}"] = outcomes.get(f"refund-{state}", 0) + 1
    if order_nos or refund_nos:
        log.info("pending query: %s", outcomes)
    return outcomes


def settle_by_query(order_no: str) -> str:
    with new_session() as session:
        order = payments.get_order(session, order_no)
    try:
        provider = get_provider(order.channel)
        report = provider.query(order)
    except (ProviderError, NotConfigured) as exc:
        log.warning("query %s failed: %s", order_no, exc)
        return "error"
    with session_scope() as session:
        return payments.settle(session, report, expect_app_id=provider.app_id,
                               expect_merchant_id=provider.merchant_id, source="query").outcome


def _load(refund_no: str) -> tuple[PaymentRefund | None, PaymentOrder | None]:
    with new_session() as session:
        refund = session.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == refund_no))
        order = session.get(PaymentOrder, refund.order_id) if refund else None
    return refund, order


def _apply(report: RefundReport, source: str) -> str:
    with session_scope() as session:
        return payments.apply_refund_report(session, report, source=source)


def _unknown(order: PaymentOrder, refund_no: str, exc: ProviderError) -> RefundReport:
    return RefundReport(channel=order.channel, refund_no=refund_no, state="unknown", order_no=order.order_no,
                        raw=exc.as_dict())


def refund_by_query(refund_no: str) -> str:
    """Ask the provider what became of an open refund and apply it. The provider never heard of it: send it
    again under the same refund number (never for an abnormal one). The query fails: the outcome stays
    unknown (an attempt is counted); nothing is reversed."""
    refund, order = _load(refund_no)
    if refund is None or order is None:
        return "missing"
    try:
        provider = get_provider(order.channel)
        report = provider.query_refund(order, refund)
    except NotConfigured as exc:
        log.warning("refund query %s: %s", refund_no, exc)
        return refund.state
    except ProviderError as exc:
        log.warning("refund query %s failed: %s", refund_no, exc)
        return _apply(_unknown(order, refund_no, exc), "query")
    if report is None:
        if refund.state == "abnormal":
            return refund.state
        return send_refund(refund_no)
    return _apply(report, "query")


@job("payments")
def send_refund(refund_no: str) -> str:
    """Ask the provider to pay a refund back under its refund number (the provider's idempotency key, so a
    second send never pays twice); apply its answer. Returns the refund's state.

    No answer, 5xx, 429, Alipay 20000/ACQ.SYSTEM_ERROR: ``unknown`` (the query job asks again; nothing is
    reversed). A definitive refusal: ``failed`` and the debit is reversed -- but for a refund sent before
    whose outcome was unknown, the provider is asked first, since the earlier send may have gone through.
    Not configured: stays as it is. Abnormal or final refunds are not sent.
    """
    refund, order = _load(refund_no)
    if refund is None or order is None:
        return "missing"
    if refund.state not in ("requested", "pending", "unknown"):
        return refund.state
    sent_before = refund.state != "requested" or (refund.attempts or 0) > 0
    try:
        provider = get_provider(order.channel)
        report = provider.refund(order, refund)
    except NotConfigured as exc:
        log.warning("refund %s: %s", refund_no, exc)
        return refund.state
    except ProviderError as exc:
        log.warning("refund %s: %s", refund_no, exc)
        if exc.retryable:
            report = _unknown(order, refund_no, exc)
        else:
            report = RefundReport(channel=order.channel, refund_no=refund_no, state="failed",
                                  order_no=order.order_no, raw=exc.as_dict())
    if report.state == "failed" and sent_before:
        try:
            found = provider.query_refund(order, refund)
        except ProviderError as exc:
            return _apply(_unknown(order, refund_no, exc), "refund-call")
        if found is not None:
            report = found
    return _apply(report, "refund-call")


@job("payments", timeout=1800)
def reconcile(day: str | None = None, channel: str | None = None) -> list[dict]:
    """Compare each provider's statement of ``day`` (default yesterday, Asia/Shanghai) with the ledger."""
    the_day = date.fromisoformat(day) if day else (datetime.now(ZoneInfo(get_settings().timezone)).date()
                                                   - timedelta(days=1))
    reports = []
    for ch in ([channel] if channel else channels()):
        try:
            lines = get_provider(ch).statement(the_day)
        except NotConfigured:
            continue
        except ProviderError as exc:
            log.warning("statement %s %s: %s", ch, the_day, exc)
            reports.append({"channel": ch, "day": the_day.isoformat(), "error": str(exc)})
            continue
        with session_scope() as session:
            row = payments.reconcile(session, ch, the_day, lines)
            reports.append({"channel": ch, "day": the_day.isoformat(), "statement_count": row.statement_count,
                            "ledger_count": row.ledger_count, "mismatches": row.mismatches})
    return reports


def reconcile_yesterday() -> list[dict]:
    return reconcile()

"""Payment callbacks: POST /pay/wechat/notify, /pay/wechat/refund-notify, /pay/alipay/notify.

Verify, then hand the report to core (``payments.settle`` / ``payments.apply_refund_report``),
which credits exactly once. A notification that must not be believed gets a 4xx (WeChat) or a
body other than ``success`` (Alipay) and changes nothing; a believed one is acknowledged, also
when it is a duplicate, late, or flagged for a manager (retrying would not change the answer).
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from core.db import session_scope
from core.errors import NotFound
from core.payments import orders as payments
from core.payments.provider import BadNotification, PaymentReport, RefundReport, get_provider

log = logging.getLogger(__name__)
bp = Blueprint("pay_callbacks", __name__, url_prefix="/pay")


def handle(channel: str, report: PaymentReport | RefundReport, provider) -> str:
    with session_scope() as session:
        if isinstance(report, RefundReport):
            return "refund-" + payments.apply_refund_report(session, report, source="callback")
        return payments.settle(session, report, expect_app_id=provider.app_id,
                               expect_merchant_id=provider.merchant_id, source="callback").outcome


def _wechat_fail(status: int, message: str):
    return jsonify({"code": "FAIL", "message": message}), status


def _wechat(expect_refund: bool | None):
    provider = get_provider("wechat")
    try:
        report = provider.parse_notification(request.headers, request.get_data())
    except BadNotification as exc:
        log.warning("wechat notification refused: %s", exc)
        return _wechat_fail(401, str(exc))
    try:
        outcome = handle("wechat", report, provider)
    except NotFound as exc:
        return _wechat_fail(404, exc.message)
    log.info("wechat notification %s: %s", getattr(report, "order_no", None) or getattr(report, "refund_no", ""),
             outcome)
    return Response(status=204)


@bp.post("/wechat/notify")
def wechat_notify():
    return _wechat(None)


@bp.post("/wechat/refund-notify")
def wechat_refund_notify():
    return _wechat(True)


@bp.post("/alipay/notify")
def alipay_notify():
    provider = get_provider("alipay")
    try:
        report = provider.parse_notification(request.headers, request.get_data())
    except BadNotification as exc:
        log.warning("alipay notification refused: %s", exc)
        return Response("failure", status=400, mimetype="text/plain")
    try:
        outcome = handle("alipay", report, provider)
    except NotFound:
        return Response("failure", status=404, mimetype="text/plain")
    log.info("alipay notification %s: %s", getattr(report, "order_no", ""), outcome)
    return Response("success", mimetype="text/plain")

"""A tenant's recharge: the order is committed first, then the provider is asked for pay parameters.

The order row exists before the provider knows of it, so a callback can always find it. A
provider failure marks the order failed; it never moves money.
"""
from __future__ import annotations

import logging
import threading
import time

from core.db import session_scope
from core.errors import MeterpayError
from core.payments import orders as payments
from core.payments.provider import ProviderError, get_provider
from miniapp_api import settings as cfg

log = logging.getLogger(__name__)


class ProviderUnavailable(MeterpayError):
    code = "provider_error"
    http_status = 502


def start(account_id: int, amount_fen: int, channel: str, *, openid: str, client_ip: str | None = None,
          front: str = "miniapp") -> dict:
    """Create the order and prepare it with the provider; returns the order view and the pay parameters.

    ``front``: where the tenant pays ("miniapp", or "official_account" for JSAPI pay inside the official
    account; ``openid`` must be the payer's openid in that same app). The order is made with that front's
    app id (``provider.app_id_for``), and a callback naming another app id is flagged, not credited.
    """
    def create(session, app_id):
        return payments.create_order(session, account_id, amount_fen, channel, openid=openid, front=front,
                                     app_id=app_id)
    return start_with(create, channel, openid=openid, client_ip=client_ip, front=front)


def start_bill(bill_no: str, channel: str, *, openid: str, client_ip: str | None = None,
               front: str = "miniapp") -> dict:
    """As ``start``, for a postpaid bill the tenant may see: the order is for what the bill still owes
    and points at it (core.bills.service.start_order); its payment goes to the bill, exactly once."""
    from core.bills import service as bills
    from core.sites import selfservice

    def create(session, app_id):
        ids = [a.id for a in selfservice.accounts_of(session, openid)]
        return bills.start_order(session, bill_no, channel, account_ids=ids, openid=openid, front=front,
                                 app_id=app_id)
    return start_with(create, channel, openid=openid, client_ip=client_ip, front=front)


def start_with(create, channel: str, *, openid: str, client_ip: str | None, front: str) -> dict:
    """Commit the order ``create(session, app_id)`` makes, then prepare it with the provider."""
    provider = get_provider(channel)  # NotConfigured (503) before any row is written
    app_id = provider.app_id_for(front)  # likewise, naming the missing app id variable
    with session_scope() as session:
        order = create(session, app_id)
        order_no = order.order_no
    try:
        params = provider.prepare(order, openid=openid, client_ip=client_ip)
    except ProviderError as exc:
        log.warning("prepare %s failed: %s", order_no, exc)
        with session_scope() as session:
            failed = payments.lock_order(session, order_no)
            if failed.state == "created":
                failed.state = "failed"
                failed.flag_reason = str(exc)[:200]
        raise ProviderUnavailable(f"{provider.verbose_name} did not accept the order; try again") from None
    with session_scope() as session:
        order = payments.lock_order(session, order_no)
        payments.mark_pending(session, order, {"prepare": {k: v for k, v in params.items()
                                                           if k in ("prepay_id", "qr_code")}})
    return {"order": order, "params": params, "sandbox_pay_url": sandbox_pay_url(channel, order_no)}


def sandbox_pay_url(channel: str, order_no: str) -> str | None:
    if not cfg.sandbox():
        return None
    if channel == "wechat":
        base = cfg.env("METERPAY_WXPAY_API_BASE", "")
    else:
        base = (cfg.env("METERPAY_ALIPAY_GATEWAY", "") or "").rsplit("/gateway.do", 1)[0]
    return f"{base.rstrip('/')}/_sandbox/pay/{order_no}" if base else None


_asked: dict[str, float] = {}
_asked_lock = threading.Lock()


def should_ask_provider(order) -> bool:
    """A tenant polling a pending order makes us ask the provider (the callback may be lost),
    at most once per METERPAY_PAY_POLL_QUERY_AFTER seconds per order and process."""
    from core.utils import utcnow
    every = cfg.poll_query_after_seconds()
    if (utcnow() - order.created_at).total_seconds() < every:
        return False
    now = time.monotonic()
    with _asked_lock:
        if now - _asked.get(order.order_no, -1e9) < every:
            return False
        if len(_asked) > 10000:
            _asked.clear()
        _asked[order.order_no] = now
    return True

"""The payment provider base (pretix's BasePaymentProvider, cut to what recharge needs).

A provider is one class with a fixed set of verbs. Core knows only this base; the SDK-backed
implementations (WeChat Pay v3, Alipay) live in ``miniapp_api/providers/`` and register
themselves by ``identifier``. No verb here moves money: the provider reports what the
payment service says happened, and ``core.payments.orders`` decides what that means for the ledger.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime


class ProviderError(Exception):
    """The provider could not be reached or refused the request (network, HTTP, signature)."""


class BadNotification(Exception):
    """A callback that must not be believed: bad signature, stale, garbage, wrong algorithm."""


@dataclass(frozen=True)
class PaymentReport:
    """What a provider says about one order (from a notification or a query).

    state: "paid" | "pending" | "closed" | "failed" | "unknown".
    app_id / merchant_id: who the provider says the money went to (None: not reported).
    """

    channel: str
    order_no: str
    state: str
    txn_id: str | None = None
    amount_fen: int | None = None
    currency: str = "CNY"
    app_id: str | None = None
    merchant_id: str | None = None
    paid_at: datetime | None = None
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RefundReport:
    """What a provider says about one refund. state: "succeeded" | "pending" | "failed"."""

    channel: str
    refund_no: str
    state: str
    order_no: str | None = None
    provider_refund_id: str | None = None
    amount_fen: int | None = None
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StatementLine:
    """One line of a provider's daily statement: a payment (+) or a refund (-) in fen."""

    kind: str  # "payment" | "refund"
    txn_id: str
    order_no: str
    amount_fen: int


class PaymentProvider:
    """One payment service. Subclasses set ``identifier`` and implement the verbs."""

    identifier: str = ""
    verbose_name: str = ""
    refund_supported: bool = False
    app_id: str | None = None
    merchant_id: str | None = None

    def prepare(self, order, *, openid: str | None = None, client_ip: str | None = None) -> dict:
        """Register the order with the provider; return what the payer's client needs. Moves no money."""
        raise NotImplementedError

    def query(self, order) -> PaymentReport:
        """Ask the provider what became of an order (used when a callback got lost)."""
        raise NotImplementedError

    def refund(self, order, refund) -> RefundReport:
        """Ask the provider to pay ``refund.amount_fen`` of ``order`` back to the payer."""
        raise NotImplementedError

    def query_refund(self, order, refund) -> RefundReport | None:
        """What became of a refund; None when the provider never received it."""
        raise NotImplementedError

    def parse_notification(self, headers: dict, body: bytes) -> PaymentReport | RefundReport:
        """Verify and decode a callback; raise BadNotification when it must not be believed."""
        raise NotImplementedError

    def statement(self, day: date) -> list[StatementLine]:
        """The provider's statement of ``day`` (its own timezone, Asia/Shanghai)."""
        raise NotImplementedError

    def matching_id(self, order) -> str | None:
        return order.provider_txn_id


_registry: dict[str, Callable[[], PaymentProvider]] = {}


def register(identifier: str, make: Callable[[], PaymentProvider]) -> None:
    """Register a provider factory (called each time, so settings changes are picked up)."""
    _registry[identifier] = make


def get_provider(identifier: str) -> PaymentProvider:
    from core.errors import ValidationError
    try:
        make = _registry[identifier]
    except KeyError:
        raise ValidationError(f"channel: must be one of {', '.join(sorted(_registry)) or '(none configured)'}",
                              field="channel") from None
    return make()


def channels() -> list[str]:
    return sorted(_registry)

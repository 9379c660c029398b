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
    """The provider could not be reached, answered with an error, or its answer could not be believed.

    Classified by fields, never by its text:

    - ``status``: the HTTP status of the answer; None when there was no answer (network error, timeout)
      or the answer was a 200 whose business code says no (Alipay).
    - ``code``: the provider's error code (WeChat Pay ``code``, Alipay ``sub_code`` or ``code``).
    - ``retryable``: False only when the provider surely did nothing and never will for this request
      (HTTP 4xx other than 429, an Alipay business refusal); True for network errors, timeouts, 5xx, 429,
      answers that do not verify, and Alipay 20000 / ACQ.SYSTEM_ERROR. A retryable error on a verb that
      moves money means the outcome is unknown: ask again (same refund number), never assume a refusal.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retryable: bool = True):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable

    @classmethod
    def from_http(cls, message: str, status: int, code: str | None = None) -> ProviderError:
        """An HTTP error answer: retryable when 5xx or 429 (the provider may have done it, or will)."""
        return cls(message, status=status, code=code, retryable=status >= 500 or status == 429)

    def as_dict(self) -> dict:
        return {"status": self.status, "code": self.code, "retryable": self.retryable, "error": str(self)[:300]}


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
    """What a provider says about one refund.

    state: "succeeded" (paid back) | "pending" (accepted, being paid) | "unknown" (no definite answer:
    ask again) | "abnormal" (WeChat ABNORMAL: the money could not reach the payer; a manager decides) |
    "failed" (a definitive refusal or CLOSED: nothing was or will be paid back). Only "failed" lets the
    ledger reverse the wallet debit.
    """

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
    """One payment service. Subclasses set ``identifier`` and implement the verbs.

    The contract every implementation keeps (after pretix's ``BasePaymentProvider``):

    - No verb touches the database or the ledger. A verb reports what the payment service says;
      ``core.payments.orders`` decides what that means (``settle`` credits a paid order once under
      ``pay:<channel>:<provider txn id>``; ``apply_refund_report`` reverses a refund's wallet debit only
      for a definitive "failed").
    - Outcomes are three-valued: done, refused, or unknown. An answer that does not settle the
      question (a timeout, a 5xx, an Alipay 20000, a WeChat PROCESSING) is reported as "pending" or
      "unknown", or raised as a retryable ``ProviderError``, and is never turned into a refusal.
    - Requests are idempotent at the provider: an order is registered under ``order.order_no`` and a
      refund under ``refund.refund_no``, so asking again after an unknown outcome never pays twice.
    - Settings are read when the provider is made (``register`` keeps a factory), namespaced by the
      provider's own variables in the settings registry.
    """

    identifier: str = ""
    verbose_name: str = ""
    refund_supported: bool = False
    app_id: str | None = None
    merchant_id: str | None = None

    def app_id_for(self, front: str) -> str | None:
        """The app id an order paid from ``front`` ("miniapp" | "official_account") is made with."""
        return self.app_id

    def prepare(self, order, *, openid: str | None = None, client_ip: str | None = None) -> dict:
        """Register the order with the provider and return what the payer's client needs to pay it
        (WeChat: the signed ``requestPayment`` parameters; Alipay: the order string).

        You may NOT do anything that moves money here: the payer has not paid yet, and may never.
        Called again for the same order it must give the same order to the provider (same
        ``order_no``). Raises ProviderError when the provider refused or could not be reached (the
        front answers 502/503 and the tenant may try again); ``NotConfigured`` when the channel has no
        credentials."""
        raise NotImplementedError

    def query(self, order) -> PaymentReport:
        """Ask the provider what became of an order (used when a callback got lost, and when a tenant
        polls a pending order). Returns a PaymentReport whose ``state`` is "paid" only when the provider
        confirms the payment (with its transaction id, amount and app id); "pending" or "unknown" when
        it cannot say yet. Raises ProviderError when there was no usable answer: the caller asks
        again later and changes nothing."""
        raise NotImplementedError

    def refund(self, order, refund) -> RefundReport:
        """Ask the provider to pay ``refund.amount_fen`` of ``order`` back to the payer, under
        ``refund.refund_no`` (the provider's idempotency key: sending it again never pays twice).

        Returns what the provider answered, "unknown" when the answer does not settle it. Raises
        ProviderError when there was no usable answer (``retryable`` False only for a definitive refusal).
        """
        raise NotImplementedError

    def query_refund(self, order, refund) -> RefundReport | None:
        """What became of a refund; None when the provider never received it (send it again, same number).
        Raises ProviderError when the provider cannot tell now."""
        raise NotImplementedError

    def parse_notification(self, headers: dict, body: bytes) -> PaymentReport | RefundReport:
        """Verify (signature, algorithm, freshness) and decode a callback.

        Raises BadNotification for anything that must not be believed; the caller answers with an
        error and changes nothing. A believed report is applied by ``core.payments.orders``, which
        checks amount, currency, app id and merchant against the order before crediting."""
        raise NotImplementedError

    def statement(self, day: date) -> list[StatementLine]:
        """The provider's statement of ``day`` (its own timezone, Asia/Shanghai), for reconciliation
        only: nothing is credited from a statement. Raises ProviderError when it is not available yet."""
        raise NotImplementedError

    def matching_id(self, order) -> str | None:
        """The id that matches the order to a statement line (the provider's transaction id)."""
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

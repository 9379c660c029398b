"""WeChat Pay API v3 through wechatpayv3: JSAPI prepay, query, refund, notifications, statement.

Both verification modes are supported: WeChat Pay public key (``METERPAY_WXPAY_PUBLIC_KEY_FILE``
+ ``_ID``) and platform certificates (downloaded from ``/v3/certificates`` and decrypted with the
API v3 key). The SDK hard-codes its gateway, so ``_GatewayCore`` points it at
``METERPAY_WXPAY_API_BASE`` (a local fake in the sandbox and the tests).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import date, datetime

from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3 import __version__ as _sdk_version
from wechatpayv3.core import Core, RequestType, build_authorization

from core.ledger.money import parse_yuan
from core.payments.provider import (
    BadNotification,
    PaymentProvider,
    PaymentReport,
    ProviderError,
    RefundReport,
    StatementLine,
)
from miniapp_api import settings as cfg

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
MAX_SKEW_SECONDS = 300
TRADE_STATES = {"SUCCESS": "paid", "NOTPAY": "pending", "USERPAYING": "pending", "CLOSED": "closed",
                "REVOKED": "closed", "PAYERROR": "failed", "REFUND": "paid"}
# A refund's status (answer, query, notification): anything else is "unknown" (asked again, never reversed).
REFUND_STATES = {"SUCCESS": "succeeded", "PROCESSING": "pending", "ABNORMAL": "abnormal", "CLOSED": "failed"}


class _GatewayCore(Core):
    """wechatpayv3's Core, talking to a configurable gateway (also while loading certificates)."""

    def __init__(self, gateway: str, **kwargs):
        self._override_gateway = gateway
        super().__init__(**kwargs)
        self._gate_way = gateway

    def _init_certificates(self):
        self._gate_way = self._override_gateway
        super()._init_certificates()

    def request(self, path, method=RequestType.GET, data=None, skip_verify=False, sign_data=None, files=None,
                cipher_data=False, headers=None):
        """``Core.request`` (signed, the answer's signature verified) on one kept-alive HTTP session
        per client (``core.utils.keepalive_http_session``) instead of a new ``requests`` session, a
        scan of the proxy environment and a new connection per call (~4 ms of CPU a recharge under
        ``bench load``). A POST (prepay, refund) is never retried; a GET (query, certificates) is
        tried once more on a connection the server closed while it was idle."""
        http = self.__dict__.get("_http")
        if http is None:
            from core.utils import keepalive_http_session
            http = self._http = keepalive_http_session(self._override_gateway)
        headers = dict(headers or {})
        headers["Content-Type"] = "multipart/form-data" if files else "application/json"
        headers["Accept"] = "application/json"
        headers["User-Agent"] = f"wechatpay python sdk v{_sdk_version}(https://github.com/minibear2021/wechatpayv3)"
        if self._public_key_id or cipher_data:
            headers["Wechatpay-Serial"] = (self._public_key_id if self._public_key_id
                                           else hex(self._last_certificate().serial_number)[2:].upper())
        headers["Authorization"] = build_authorization(path, method.value, self._mchid, self._cert_serial_no,
                                                       self._private_key, data=sign_data if sign_data else data)
        url = self._gate_way + path
        if method == RequestType.POST:
            response = http.post(url, json=None if files else data, data=data if files else None, headers=headers,
                                 files=files, proxies=self._proxy, timeout=self._timeout)
        elif method in (RequestType.GET, RequestType.DELETE):
            response = http.request(method.value, url, headers=headers, proxies=self._proxy, timeout=self._timeout)
        else:  # PATCH, PUT
            response = http.request(method.value, url, json=data, headers=headers, proxies=self._proxy,
                                    timeout=self._timeout)
        if 200 <= response.status_code < 300 and not skip_verify:
            if not self._verify_signature(response.headers, response.text):
                raise Exception("failed to verify the signature")
        return response.status_code, (response.text if "application/json" in response.headers.get("Content-Type", "")
                                      else response.content)


def _client(s: cfg.WxPaySettings) -> WeChatPay:
    pay = WeChatPay.__new__(WeChatPay)
    pay._type, pay._mchid, pay._appid = WeChatPayType.MINIPROG, s.mchid, s.miniapp_appid or s.oa_appid
    pay._notify_url, pay._partner_mode = s.notify_url, False
    pay._core = _GatewayCore(s.api_base, mchid=s.mchid, cert_serial_no=s.cert_serial, private_key=s.private_key,
                             apiv3_key=s.apiv3_key, timeout=(min(5.0, s.timeout), s.timeout), public_key=s.public_key,
                             public_key_id=s.public_key_id)
    return pay


_cache_lock = threading.Lock()
_cache: dict[cfg.WxPaySettings, WeChatPay] = {}


def client_for(s: cfg.WxPaySettings) -> WeChatPay:
    """One SDK client per configuration (certificate mode downloads certificates once)."""
    with _cache_lock:
        pay = _cache.get(s)
    if pay is None:
        try:
            pay = _client(s)
        except Exception as exc:
            raise ProviderError(f"WeChat Pay client: {exc}") from exc
        with _cache_lock:
            _cache[s] = pay
    return pay


def _error_code(body) -> tuple[str | None, str]:
    """WeChat Pay's error answer ``{"code": ..., "message": ...}``: (code, message); (None, text) otherwise."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        data = json.loads(text)
    except ValueError:
        return None, text[:200]
    if not isinstance(data, dict):
        return None, text[:200]
    code = data.get("code")
    return (str(code) if code else None), str(data.get("message") or "")[:200]


def _request(what: str, fn, *args, **kwargs) -> tuple[int, object]:
    """Call the SDK: (HTTP status, body). No answer (network error, timeout) or an answer whose signature
    does not verify raises a retryable ProviderError with ``status=None``."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the SDK raises requests' errors and bare Exception
        raise ProviderError(f"WeChat Pay {what}: {type(exc).__name__}: {exc}", status=None, retryable=True) from exc


def _call(what: str, fn, *args, **kwargs) -> dict:
    """The answer of a successful call; ProviderError (status, WeChat's ``code``, retryable) otherwise."""
    code, body = _request(what, fn, *args, **kwargs)
    if code not in range(200, 300):
        error, message = _error_code(body)
        raise ProviderError.from_http(f"WeChat Pay {what}: HTTP {code} {error or ''} {message}".rstrip(), code,
                                      error)
    if isinstance(body, bytes):
        return {"_raw": body.decode("utf-8", "replace")}
    try:
        return json.loads(body) if body else {}
    except ValueError as exc:
        raise ProviderError(f"WeChat Pay {what}: unreadable answer", status=code) from exc


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class WeChatPayProvider(PaymentProvider):
    identifier = "wechat"
    verbose_name = "WeChat Pay"
    refund_supported = True

    def __init__(self):
        self.s = cfg.wxpay()
        # The app id an order from before orders recorded theirs is checked against (they were all mini-program's).
        self.app_id, self.merchant_id = self.s.miniapp_appid or self.s.oa_appid, self.s.mchid

    @property
    def pay(self) -> WeChatPay:
        return client_for(self.s)

    def app_id_for(self, front: str) -> str:
        """The mini-program's app id for "miniapp", the official account's for "official_account"
        (NotConfigured naming the variable when that one is unset)."""
        return self.s.app_id_for(front)

    def prepare(self, order, *, openid=None, client_ip=None) -> dict:
        """A JSAPI prepay under the order's app id: the mini-program's (MINIPROG, ``wx.requestPayment``) or
        the official account's (JSAPI, ``WeixinJSBridge`` getBrandWCPayRequest); both take the same signed
        parameters."""
        if not openid:
            raise ProviderError("WeChat Pay JSAPI needs the payer's openid", retryable=False)
        front = order.front or "miniapp"
        appid = order.app_id or self.app_id_for(front)
        body = _call("prepay", self.pay.pay, description=f"meterpay recharge {order.order_no}",
                     out_trade_no=order.order_no, amount={"total": order.amount_fen, "currency": "CNY"},
                     payer={"openid": openid}, appid=appid,
                     pay_type=WeChatPayType.MINIPROG if front == "miniapp" else WeChatPayType.JSAPI)
        prepay_id = body.get("prepay_id")
        if not prepay_id:
            raise ProviderError("WeChat Pay prepay: no prepay_id in the answer")
        timestamp, nonce, package = str(int(time.time())), secrets.token_hex(16), f"prepay_id={prepay_id}"
        pay_sign = self.pay.sign([appid, timestamp, nonce, package])
        return {"prepay_id": prepay_id,
                "request_payment": {"appId": appid, "timeStamp": timestamp, "nonceStr": nonce,
                                    "package": package, "signType": "RSA", "paySign": pay_sign}}

    def _report(self, r: dict, raw: dict) -> PaymentReport:
        amount = r.get("amount") or {}
        return PaymentReport(channel="wechat", order_no=r.get("out_trade_no", ""),
                             state=TRADE_STATES.get(r.get("trade_state", ""), "unknown"),
                             txn_id=r.get("transaction_id"), amount_fen=amount.get("total"),
                             currency=amount.get("currency", "CNY"), app_id=r.get("appid"),
                             merchant_id=r.get("mchid"), paid_at=_parse_time(r.get("success_time")), raw=raw)

    def query(self, order) -> PaymentReport:
        body = _call("query", self.pay.query, out_trade_no=order.order_no)
        return self._report(body, body)

    def refund(self, order, refund) -> RefundReport:
        """POST /v3/refund/domestic/refunds under ``out_refund_no`` = our refund number (sending it again
        returns the same refund). The answer's status: SUCCESS, PROCESSING, ABNORMAL or CLOSED. No answer,
        5xx or 429 raise a retryable ProviderError (the outcome is unknown: query it); other 4xx a
        definitive one."""
        body = _call("refund", self.pay.refund, out_refund_no=refund.refund_no, out_trade_no=order.order_no,
                     amount={"refund": refund.amount_fen, "total": order.amount_fen, "currency": "CNY"},
                     reason=refund.reason or None, notify_url=self.s.refund_notify_url)
        return self._refund_report(body, body)

    def query_refund(self, order, refund) -> RefundReport | None:
        """GET /v3/refund/domestic/refunds/{out_refund_no}; None on 404 (WeChat Pay never got it)."""
        code, text = _request("refund query", self.pay.query_refund, out_refund_no=refund.refund_no)
        if code == 404:
            return None
        if code not in range(200, 300):
            error, message = _error_code(text)
            raise ProviderError.from_http(f"WeChat Pay refund query: HTTP {code} {error or ''} {message}".rstrip(),
                                          code, error)
        try:
            body = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ProviderError("WeChat Pay refund query: unreadable answer", status=code) from exc
        return self._refund_report(body, body)

    def _refund_report(self, r: dict, raw: dict) -> RefundReport:
        status = r.get("status") or r.get("refund_status") or ""
        return RefundReport(channel="wechat", refund_no=r.get("out_refund_no", ""),
                            state=REFUND_STATES.get(status, "unknown"), order_no=r.get("out_trade_no"),
                            provider_refund_id=r.get("refund_id"),
                            amount_fen=(r.get("amount") or {}).get("refund"), raw=raw)

    def parse_notification(self, headers, body: bytes):
        if headers.get("Wechatpay-Signature-Type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
            raise BadNotification("unsupported signature type")
        for name in ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"):
            if not headers.get(name):
                raise BadNotification(f"missing header {name}")
        try:
            stamp = int(headers.get("Wechatpay-Timestamp"))
        except ValueError:
            raise BadNotification("bad timestamp") from None
        if abs(time.time() - stamp) > MAX_SKEW_SECONDS:
            raise BadNotification("stale notification (timestamp more than 5 minutes away)")
        try:
            data = self.pay.callback(headers, body)
        except Exception as exc:  # noqa: BLE001 - the SDK raises bare Exception on odd input
            raise BadNotification(f"unreadable notification: {type(exc).__name__}") from None
        if not data or not isinstance(data.get("resource"), dict):
            raise BadNotification("signature or decryption failed")
        event, resource = data.get("event_type", ""), data["resource"]
        if event.startswith("TRANSACTION."):
            return self._report(resource, data)
        if event.startswith("REFUND."):
            return self._refund_report(resource, data)
        raise BadNotification(f"unknown event type {event!r}")

    def statement(self, day: date) -> list[StatementLine]:
        body = _call("trade bill", self.pay._core.request,
                     f"/v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=ALL")
        url = body.get("download_url")
        if not url:
            raise ProviderError("WeChat Pay trade bill: no download_url")
        raw = _call("bill download", self.pay.download_bill, url)
        text = raw.get("_raw") if "_raw" in raw else json.dumps(raw)
        return parse_trade_bill(text)


def parse_trade_bill(text: str) -> list[StatementLine]:
    """WeChat Pay's trade bill CSV: a header row, then rows whose fields start with a backtick."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split(",")]
    col = {name: i for i, name in enumerate(header)}
    out: list[StatementLine] = []
    for ln in lines[1:]:
        if not ln.startswith("`"):
            break  # the summary block follows the detail rows
        cells = [c.strip().lstrip("`") for c in ln.split(",")]
        state = cells[col["交易状态"]]
        if state == "SUCCESS":
            out.append(StatementLine("payment", cells[col["微信订单号"]], cells[col["商户订单号"]],
                                     parse_yuan(cells[col["应结订单金额"]])))
        elif state == "REFUND":
            out.append(StatementLine("refund", cells[col["微信退款单号"]], cells[col["商户订单号"]],
                                     parse_yuan(cells[col["退款金额"]])))
    return out


def make() -> WeChatPayProvider:
    return WeChatPayProvider()

"""Alipay through alipay-sdk-python, RSA2 only: precreate (QR), query, refund, notifications, statement.

The SDK builds and signs each request (``DefaultAlipayClient.sdk_execute``: all parameters plus an
RSA2 signature). Its own HTTP helper cannot reach a gateway with an explicit port (it always
connects to 80/443), so we POST that signed query with ``requests`` and verify the answer's
signature ourselves. Anything signed with RSA (SHA-1) is refused: a notification must say
``sign_type=RSA2`` and its signature must verify as SHA-256.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import requests
import rsa
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayDataDataserviceBillDownloadurlQueryModel import (
    AlipayDataDataserviceBillDownloadurlQueryModel,
)
from alipay.aop.api.domain.AlipayTradeFastpayRefundQueryModel import AlipayTradeFastpayRefundQueryModel
from alipay.aop.api.domain.AlipayTradePrecreateModel import AlipayTradePrecreateModel
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
    AlipayDataDataserviceBillDownloadurlQueryRequest,
)
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.util.SignatureUtils import get_sign_content

from core.errors import ValidationError
from core.ledger.money import format_fen, parse_yuan
from core.payments.provider import (
    BadNotification,
    PaymentProvider,
    PaymentReport,
    ProviderError,
    RefundReport,
    StatementLine,
)
from miniapp_api import settings as cfg

TRADE_STATES = {"TRADE_SUCCESS": "paid", "TRADE_FINISHED": "paid", "WAIT_BUYER_PAY": "pending",
                "TRADE_CLOSED": "closed"}
CHINA = ZoneInfo("Asia/Shanghai")


def _system_error(r: dict) -> bool:
    """Alipay 20000 (service unavailable) or ACQ.SYSTEM_ERROR: it does not know; ask again, same request."""
    return r.get("code") == "20000" or r.get("sub_code") == "ACQ.SYSTEM_ERROR"


def pkcs1_private_key(pem: str) -> str:
    """The SDK signs with PKCS#1 keys only; accept PKCS#8 too (what Alipay's key tool writes)."""
    if "BEGIN RSA PRIVATE KEY" in pem:
        return pem
    from cryptography.hazmat.primitives import serialization
    text = pem if "BEGIN" in pem else f"-----BEGIN PRIVATE KEY-----\n{pem.strip()}\n-----END PRIVATE KEY-----\n"
    key = serialization.load_pem_private_key(text.encode(), password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _public_key(pem: str) -> rsa.PublicKey:
    if "BEGIN" not in pem:
        pem = f"-----BEGIN PUBLIC KEY-----\n{pem.strip()}\n-----END PUBLIC KEY-----\n"
    return rsa.PublicKey.load_pkcs1_openssl_pem(pem.encode())


def verify_rsa2(public_key: rsa.PublicKey, message: bytes, sign_b64: str) -> bool:
    """True only for a valid RSA signature over SHA-256 (an RSA/SHA-1 signature is refused)."""
    import base64
    import binascii
    try:
        return rsa.verify(message, base64.b64decode(sign_b64, validate=True), public_key) == "SHA-256"
    except (rsa.VerificationError, binascii.Error, ValueError):
        return False


def _signed_part(text: str, key: str) -> tuple[str, dict]:
    """The exact text of ``"<key>": {...}`` in a gateway answer (what Alipay signed) and its value."""
    marker = f'"{key}"'
    at = text.find(marker)
    if at < 0:
        raise ProviderError(f"Alipay: answer has no {key}")
    start = text.index(":", at + len(marker)) + 1
    while text[start] in " \t\r\n":
        start += 1
    value, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end], value


class AlipayProvider(PaymentProvider):
    identifier = "alipay"
    verbose_name = "Alipay"
    refund_supported = True

    def __init__(self):
        self.s = cfg.alipay()
        self.app_id = self.s.appid
        self.merchant_id = None
        conf = AlipayClientConfig()
        conf.app_id, conf.sign_type, conf.server_url = self.s.appid, "RSA2", self.s.gateway
        conf.app_private_key = pkcs1_private_key(self.s.private_key)
        conf.alipay_public_key = self.s.public_key
        self.client = DefaultAlipayClient(conf)
        self.alipay_key = _public_key(self.s.public_key)

    def _execute(self, request, method: str) -> dict:
        """POST the signed request; the verified business answer (``code``, ``sub_code``, ...).

        No answer (network error, timeout), an HTTP error or an answer that does not verify raise
        ProviderError: retryable unless the HTTP status is a 4xx other than 429. (Alipay signs its error
        answers only sometimes: an unsigned answer is not believed, so it stays retryable.)
        """
        query = self.client.sdk_execute(request)
        try:
            resp = requests.post(self.s.gateway, data=query, timeout=(min(5.0, self.s.timeout), self.s.timeout),
                                 headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        except requests.RequestException as exc:
            raise ProviderError(f"Alipay {method}: {type(exc).__name__}: {exc}", status=None) from exc
        if resp.status_code != 200:
            raise ProviderError.from_http(f"Alipay {method}: HTTP {resp.status_code}", resp.status_code)
        text = resp.content.decode("utf-8", "replace")
        key = method.replace(".", "_") + "_response"
        try:
            signed, value = _signed_part(text, key)
            sign = json.loads(text).get("sign")
        except (ValueError, ProviderError) as exc:
            raise ProviderError(f"Alipay {method}: unreadable answer", status=200) from exc
        if not sign or not verify_rsa2(self.alipay_key, signed.encode("utf-8"), sign):
            raise ProviderError(f"Alipay {method}: answer signature does not verify", status=200,
                                code=value.get("sub_code") or value.get("code"))
        return value

    def prepare(self, order, *, openid=None, client_ip=None) -> dict:
        model = AlipayTradePrecreateModel()
        model.out_trade_no, model.total_amount = order.order_no, format_fen(order.amount_fen)
        model.subject = f"meterpay recharge {order.order_no}"
        request = AlipayTradePrecreateRequest(biz_model=model)
        request.notify_url = self.s.notify_url
        r = self._execute(request, "alipay.trade.precreate")
        if r.get("code") != "10000" or not r.get("qr_code"):
            raise ProviderError(f"Alipay precreate: {r.get('sub_msg') or r.get('msg') or 'refused'}",
                                code=r.get("sub_code") or r.get("code"), retryable=_system_error(r))
        return {"qr_code": r["qr_code"]}

    def query(self, order) -> PaymentReport:
        model = AlipayTradeQueryModel()
        model.out_trade_no = order.order_no
        r = self._execute(AlipayTradeQueryRequest(biz_model=model), "alipay.trade.query")
        if r.get("code") != "10000":
            # ACQ.TRADE_NOT_EXIST: the payer has not scanned yet
            return PaymentReport(channel="alipay", order_no=order.order_no, state="pending", raw=r)
        return self._report(r, r)

    def _report(self, r: dict, raw: dict) -> PaymentReport:
        try:
            amount = parse_yuan(r["total_amount"]) if r.get("total_amount") else None
        except Exception:  # noqa: BLE001 - a garbled amount is a mismatch, not a crash
            amount = -1
        return PaymentReport(channel="alipay", order_no=r.get("out_trade_no", ""),
                             state=TRADE_STATES.get(r.get("trade_status", ""), "unknown"), txn_id=r.get("trade_no"),
                             amount_fen=amount, currency="CNY", app_id=r.get("app_id", self.s.appid),
                             paid_at=_parse_time(r.get("gmt_payment") or r.get("send_pay_date")), raw=raw)

    def refund(self, order, refund) -> RefundReport:
        """alipay.trade.refund under ``out_request_no`` = our refund number (Alipay's idempotency key).

        - ``code`` 10000 with ``fund_change`` Y: refunded now -> succeeded.
        - 10000 with ``fund_change`` N: no money moved by this call (refunded before under this number, or
          not yet) -> ask alipay.trade.fastpay.refund.query at once; unless it says REFUND_SUCCESS -> unknown.
        - 20000 or ``sub_code`` ACQ.SYSTEM_ERROR: Alipay does not know -> unknown (query it, then send again
          with the same ``out_request_no``, as Alipay asks).
        - any other code (40004 ACQ.TRADE_STATUS_ERROR, ...): a definitive refusal -> failed, ``sub_code`` in raw.
        Raises ProviderError when there is no usable answer (see ``_execute``).
        """
        model = AlipayTradeRefundModel()
        model.out_trade_no, model.refund_amount = order.order_no, format_fen(refund.amount_fen)
        model.out_request_no, model.refund_reason = refund.refund_no, refund.reason or "refund"
        r = self._execute(AlipayTradeRefundRequest(biz_model=model), "alipay.trade.refund")
        code, sub_code = r.get("code"), r.get("sub_code")

        def report(state: str, raw: dict, **kw) -> RefundReport:
            return RefundReport(channel="alipay", refund_no=refund.refund_no, state=state, order_no=order.order_no,
                                raw=raw, **kw)
        if code == "10000" and r.get("fund_change") == "Y":
            return report("succeeded", r, provider_refund_id=f"{r.get('trade_no')}:{refund.refund_no}",
                          amount_fen=refund.amount_fen)
        if code == "10000":
            try:
                found = self.query_refund(order, refund)
            except ProviderError as exc:
                return report("unknown", {**r, "query": exc.as_dict()})
            if found is not None and found.state == "succeeded":
                return found
            return report("unknown", {**r, "query": found.raw if found else "not received",
                                      "error": "fund_change N and the query does not confirm the refund"})
        if _system_error(r):
            return report("unknown", {**r, "error": f"Alipay {code} {sub_code or ''}".strip()})
        return report("failed", {**r, "error": f"Alipay refused: {code} {sub_code or ''} {r.get('sub_msg') or ''}"
                                 .strip()})

    def query_refund(self, order, refund) -> RefundReport | None:
        """alipay.trade.fastpay.refund.query: REFUND_SUCCESS -> succeeded; an answer without the refund's data
        -> None (never received: send it again with the same ``out_request_no``); data without
        REFUND_SUCCESS -> pending. 20000 / ACQ.SYSTEM_ERROR raise a retryable ProviderError, other refusals
        of the query a definitive one (which still says nothing about the refund)."""
        model = AlipayTradeFastpayRefundQueryModel()
        model.out_trade_no, model.out_request_no = order.order_no, refund.refund_no
        model.query_options = ["gmt_refund_pay"]
        r = self._execute(AlipayTradeFastpayRefundQueryRequest(biz_model=model), "alipay.trade.fastpay.refund.query")
        if r.get("code") != "10000":
            raise ProviderError(f"Alipay refund query: {r.get('code')} {r.get('sub_code') or ''} "
                                f"{r.get('sub_msg') or r.get('msg') or ''}".strip(),
                                code=r.get("sub_code") or r.get("code"), retryable=_system_error(r))
        if not r.get("out_request_no") and not r.get("refund_amount"):
            return None
        state = "succeeded" if r.get("refund_status") == "REFUND_SUCCESS" else "pending"
        try:
            amount = parse_yuan(r["refund_amount"]) if r.get("refund_amount") else None
        except ValidationError:
            amount = -1  # garbled: a mismatch for a manager, never a crash
        return RefundReport(channel="alipay", refund_no=refund.refund_no, state=state, order_no=order.order_no,
                            provider_refund_id=f"{r.get('trade_no')}:{refund.refund_no}"
                            if state == "succeeded" else None, amount_fen=amount, raw=r)

    def parse_notification(self, headers, body: bytes):
        try:
            params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise BadNotification("not a form body") from None
        sign, sign_type = params.pop("sign", None), params.pop("sign_type", None)
        if sign_type != "RSA2":
            raise BadNotification(f"sign_type {sign_type!r} refused: RSA2 only")
        content = get_sign_content({k: v for k, v in params.items() if v != ""})
        if not sign or not verify_rsa2(self.alipay_key, content.encode("utf-8"), sign):
            raise BadNotification("signature does not verify")
        if params.get("out_biz_no") and params.get("refund_fee"):
            return RefundReport(channel="alipay", refund_no=params["out_biz_no"], state="succeeded",
                                order_no=params.get("out_trade_no"),
                                provider_refund_id=f"{params.get('trade_no')}:{params['out_biz_no']}",
                                amount_fen=None, raw=params)
        return self._report(params, params)

    def statement(self, day: date) -> list[StatementLine]:
        model = AlipayDataDataserviceBillDownloadurlQueryModel()
        model.bill_type, model.bill_date = "trade", day.isoformat()
        r = self._execute(AlipayDataDataserviceBillDownloadurlQueryRequest(biz_model=model),
                          "alipay.data.dataservice.bill.downloadurl.query")
        url = r.get("bill_download_url")
        if r.get("code") != "10000" or not url:
            raise ProviderError(f"Alipay bill: {r.get('sub_msg') or r.get('msg') or 'no download url'}",
                                code=r.get("sub_code") or r.get("code"),
                                retryable=_system_error(r) or r.get("code") == "10000")
        try:
            content = requests.get(url, timeout=(5, 30)).content
        except requests.RequestException as exc:
            raise ProviderError(f"Alipay bill download: {exc}") from exc
        return parse_bill_zip(content)


def parse_bill_zip(content: bytes) -> list[StatementLine]:
    """Alipay's bill: a zip holding GBK CSVs; the detail file lists 支付宝交易号, 商户订单号, 业务类型, amounts."""
    out: list[StatementLine] = []
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        for name in zf.namelist():
            text = zf.read(name).decode("gbk", "replace")
            rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("#")]
            if not rows or "支付宝交易号" not in [c.strip() for c in rows[0]]:
                continue
            col = {c.strip(): i for i, c in enumerate(rows[0])}
            for row in rows[1:]:
                if len(row) < len(col):
                    continue
                kind = row[col["业务类型"]].strip()
                amount = parse_yuan(row[col["订单金额（元）"]].strip().lstrip("-"))
                if kind == "交易":
                    out.append(StatementLine("payment", row[col["支付宝交易号"]].strip(),
                                             row[col["商户订单号"]].strip(), amount))
                elif kind == "退款":
                    refund_no = row[col.get("退款批次号/请求号", col["商户订单号"])].strip()
                    out.append(StatementLine("refund", f"{row[col['支付宝交易号']].strip()}:{refund_no}",
                                             row[col["商户订单号"]].strip(), amount))
    return out


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA) if text else None
    except ValueError:
        return None


def make() -> AlipayProvider:
    return AlipayProvider()

"""SANDBOX: local fakes of WeChat login, WeChat Pay API v3 and the Alipay gateway.

Mounted by ``meterpay/sandbox.py`` (``meterpay sandbox --port 5055``) and by the tests. It keeps
orders in memory, verifies our signed requests with our sandbox public keys, signs its answers
and notifications with its own sandbox keys, and sends notifications to the ``notify_url`` we
gave it. A person (or a test) "pays" an order with ``POST /_sandbox/pay/<order no>``; add
``?notify=0`` to lose the callback, or ``?notify=later`` to get the answer first and the callback
afterwards from another thread (as the real services do; ``meterpay bench load`` uses it). Never
point production at it.

It can misbehave the way the real services do: ``inject(api, *faults)`` (or ``POST /_sandbox/faults
{"api": ..., "faults": [...]}``) queues faults that the next calls of that API consume, one per call
(``FAULT_MODES`` lists them). ``CALLS`` records every login and refund request (with its app id and
refund number), so a test can see what was asked and how often.

Paths are the real ones relative to each base URL: ``/sns/jscode2session`` (WeChat),
``/v3/...`` (WeChat Pay), ``/gateway.do`` (Alipay).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
import threading
import time
import zipfile
from datetime import datetime, timedelta, timezone

import requests
from flask import Blueprint, Response, jsonify, request

from core.errors import ValidationError
from core.ledger.money import format_fen, parse_yuan
from miniapp_api import sandbox_keys
from miniapp_api import sandbox_sign as sign

bp = Blueprint("miniapp_sandbox", __name__)
CHINA = timezone(timedelta(hours=8))

_lock = threading.RLock()
WX_ORDERS: dict[str, dict] = {}
WX_REFUNDS: dict[str, dict] = {}
ALI_ORDERS: dict[str, dict] = {}
ALI_REFUNDS: dict[str, dict] = {}
SENT: list[dict] = []  # every notification sent: url, status, kind
CALLS: list[dict] = []  # every login and refund request: api, app id, refund number, the fault it met
FAULTS: dict[str, list[str]] = {}  # api -> faults still queued, one consumed per call

# api -> fault -> what the sandbox does instead of answering normally
FAULT_MODES: dict[str, dict[str, str]] = {
    "alipay.trade.refund": {
        "system_error": "20000 ACQ.SYSTEM_ERROR, nothing applied",
        "system_error_after": "the refund is applied, then 20000 ACQ.SYSTEM_ERROR",
        "fund_change_n": "the refund is applied, then 10000 with fund_change N",
        "timeout": "the refund is applied, the answer comes after TIMEOUT_DELAY seconds",
        "refused": "40004 ACQ.TRADE_STATUS_ERROR, nothing applied",
        "http_502": "HTTP 502 without a body, nothing applied",
    },
    "alipay.trade.fastpay.refund.query": {
        "system_error": "20000 ACQ.SYSTEM_ERROR",
        "no_data": "10000 without the refund's data (as if never received)",
    },
    "wechat.refund": {
        "http_500": "500 SYSTEM_ERROR, nothing applied",
        "http_500_after": "the refund succeeds (its notification is lost), then 500 SYSTEM_ERROR",
        "timeout": "the refund succeeds (its notification is lost), the answer comes after TIMEOUT_DELAY seconds",
        "abnormal": "status ABNORMAL, and a REFUND.ABNORMAL notification",
        "closed": "status CLOSED, and a REFUND.CLOSED notification",
        "processing": "PROCESSING without a notification; the first query still says PROCESSING, the next SUCCESS",
        "frequency_limited": "429 FREQUENCY_LIMITED, nothing applied",
    },
    "wechat.refund_query": {
        "http_500": "500 SYSTEM_ERROR",
    },
}
TIMEOUT_DELAY = 2.0  # seconds a "timeout" fault holds its answer (set METERPAY_PAY_TIMEOUT below it)


def reset() -> None:
    global TIMEOUT_DELAY
    with _lock:
        for d in (WX_ORDERS, WX_REFUNDS, ALI_ORDERS, ALI_REFUNDS):
            d.clear()
        SENT.clear()
        CALLS.clear()
        FAULTS.clear()
        TIMEOUT_DELAY = 2.0


def inject(api: str, *faults: str) -> None:
    """Queue faults for the next calls of ``api`` (one per call, in order); ValueError for unknown ones."""
    known = FAULT_MODES.get(api)
    if known is None:
        raise ValueError(f"unknown api {api!r}; one of {', '.join(FAULT_MODES)}")
    bad = [f for f in faults if f not in known]
    if bad:
        raise ValueError(f"unknown fault(s) {', '.join(bad)} for {api}; one of {', '.join(known)}")
    with _lock:
        FAULTS.setdefault(api, []).extend(faults)


def _fault(api: str) -> str | None:
    with _lock:
        queued = FAULTS.get(api)
        return queued.pop(0) if queued else None


def _called(api: str, **detail) -> None:
    with _lock:
        CALLS.append({"api": api, "at": time.time(), **detail})


def _now_text() -> str:
    return datetime.now(CHINA).isoformat(timespec="seconds")


def _post(url: str, body, headers: dict, kind: str) -> int:
    try:
        status = requests.post(url, data=body.encode() if isinstance(body, str) else body, headers=headers,
                               timeout=10).status_code
    except requests.RequestException:
        status = 0
    with _lock:
        SENT.append({"url": url, "status": status, "kind": kind, "at": time.time()})
    return status


# --- WeChat login -----------------------------------------------------------------------

@bp.get("/sns/jscode2session")
def jscode2session():
    """The mini-program's login: only the mini-program's app id and secret are accepted."""
    args = request.args
    _called("wechat.jscode2session", appid=args.get("appid"))
    if args.get("appid") != sign.miniapp_appid() or args.get("secret") != sign.miniapp_secret():
        return jsonify({"errcode": 40125, "errmsg": "invalid appsecret (sandbox)"})
    code = args.get("js_code", "")
    if not code or code.startswith("bad"):
        return jsonify({"errcode": 40029, "errmsg": "invalid code (sandbox)"})
    if code.startswith("down"):  # WeChat's side failing: an HTTP 503, as a gateway in trouble answers
        return Response("service unavailable (sandbox)", status=503)
    if code.startswith("busy"):  # 系统繁忙: errcode -1, try again later
        return jsonify({"errcode": -1, "errmsg": "system error (sandbox)"})
    openid = "osbx" + hashlib.sha256(code.encode()).hexdigest()[:24]
    return jsonify({"openid": openid, "session_key": secrets.token_urlsafe(16)})


# --- WeChat Pay API v3 ------------------------------------------------------------------

def _wx_answer(payload: dict, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False)
    public_key_mode = request.headers.get("Wechatpay-Serial") == sandbox_keys.WXPAY_PUBLIC_KEY_ID
    headers = sign.wx_sign_headers(body, public_key_mode=public_key_mode) if status < 300 else {}
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _wx_error(status: int, code: str, message: str) -> Response:
    return _wx_answer({"code": code, "message": message}, status)


@bp.before_request
def _wx_check_signature():
    if not request.path.startswith("/v3/") or request.path.startswith("/v3/billdownload"):
        return None
    path = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
    body = request.get_data(as_text=True) if request.method != "GET" else ""
    if not sign.wx_verify_request(request.method, path, body, request.headers.get("Authorization", "")):
        return _wx_error(401, "SIGN_ERROR", "signature of the merchant request does not verify (sandbox)")
    return None


@bp.post("/v3/pay/transactions/jsapi")
def wx_jsapi():
    data = request.get_json(force=True, silent=True) or {}
    no = data.get("out_trade_no")
    if data.get("appid") not in sign.wx_appids() or data.get("mchid") != sign.wx_mchid():
        return _wx_error(400, "PARAM_ERROR", "appid and mchid do not match (sandbox)")
    total = (data.get("amount") or {}).get("total")
    if not no or not isinstance(total, int) or total <= 0 or not (data.get("payer") or {}).get("openid"):
        return _wx_error(400, "PARAM_ERROR", "out_trade_no, amount.total and payer.openid are required")
    with _lock:
        order = WX_ORDERS.get(no)
        if order is None:
            order = WX_ORDERS[no] = {"out_trade_no": no, "amount": total, "notify_url": data.get("notify_url"),
                                     "appid": data["appid"],
                                     "openid": data["payer"]["openid"], "state": "NOTPAY",
                                     "prepay_id": "wx" + secrets.token_hex(14), "transaction_id": None,
                                     "success_time": None, "refunded": 0,
                                     # Public-key mode clients send Wechatpay-Serial = the key id; sign to match.
                                     "pk_mode": request.headers.get("Wechatpay-Serial")
                                     == sandbox_keys.WXPAY_PUBLIC_KEY_ID}
        elif order["amount"] != total:
            return _wx_error(400, "INVALID_REQUEST", "out_trade_no reused with another amount")
    return _wx_answer({"prepay_id": order["prepay_id"]})


def _wx_transaction(order: dict) -> dict:
    out = {"appid": order["appid"], "mchid": sign.wx_mchid(), "out_trade_no": order["out_trade_no"],
           "trade_state": order["state"], "trade_state_desc": order["state"].lower(), "trade_type": "JSAPI",
           "payer": {"openid": order["openid"]},
           "amount": {"total": order["amount"], "currency": "CNY"}}
    if order["transaction_id"]:
        out.update(transaction_id=order["transaction_id"], success_time=order["success_time"],
                   bank_type="OTHERS")
        out["amount"].update(payer_total=order["amount"], payer_currency="CNY")
    return out


@bp.get("/v3/pay/transactions/out-trade-no/<no>")
def wx_query(no):
    order = WX_ORDERS.get(no)
    if order is None:
        return _wx_error(404, "ORDER_NOT_EXIST", "no such order (sandbox)")
    return _wx_answer(_wx_transaction(order))


@bp.post("/v3/pay/transactions/out-trade-no/<no>/close")
def wx_close(no):
    with _lock:
        order = WX_ORDERS.get(no)
        if order is None:
            return _wx_error(404, "ORDER_NOT_EXIST", "no such order (sandbox)")
        if order["state"] == "NOTPAY":
            order["state"] = "CLOSED"
    return Response(status=204)


def _wx_refund_body(r: dict) -> dict:
    return {"refund_id": r["refund_id"], "out_refund_no": r["out_refund_no"], "transaction_id": r["transaction_id"],
            "out_trade_no": r["out_trade_no"], "channel": "ORIGINAL", "status": r["status"],
            "create_time": r["create_time"], "success_time": r.get("success_time"),
            "amount": {"refund": r["amount"], "total": r["total"], "currency": "CNY",
                       "payer_refund": r["amount"], "payer_total": r["total"]}}


@bp.post("/v3/refund/domestic/refunds")
def wx_refund():
    data = request.get_json(force=True, silent=True) or {}
    amount = data.get("amount") or {}
    no = data.get("out_refund_no")
    fault = _fault("wechat.refund")
    _called("wechat.refund", refund_no=no, order_no=data.get("out_trade_no"), fault=fault)
    if fault == "http_500":
        return _wx_error(500, "SYSTEM_ERROR", "system error, try again with the same out_refund_no (sandbox)")
    if fault == "frequency_limited":
        return _wx_error(429, "FREQUENCY_LIMITED", "too many requests (sandbox)")
    with _lock:
        order = WX_ORDERS.get(data.get("out_trade_no") or "")
        if order is None or order["state"] not in ("SUCCESS", "REFUND"):
            return _wx_error(400, "INVALID_REQUEST", "order is not paid (sandbox)")
        if no in WX_REFUNDS:
            return _wx_answer(_wx_refund_body(WX_REFUNDS[no]))
        refund = amount.get("refund")
        if not isinstance(refund, int) or refund <= 0 or refund > order["amount"] - order["refunded"]:
            return _wx_error(400, "INVALID_REQUEST", "refund amount is more than is left (sandbox)")
        order["refunded"] += refund
        order["state"] = "REFUND"
        r = WX_REFUNDS[no] = {"refund_id": "50" + secrets.token_hex(14), "out_refund_no": no,
                              "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
                              "status": "PROCESSING", "create_time": _now_text(), "amount": refund,
                              "total": order["amount"], "notify_url": data.get("notify_url"),
                              "pk_mode": order["pk_mode"], "then_success": False, "queries_processing": 0}
        if fault in ("http_500_after", "timeout"):  # done, but the notification is lost
            r["status"], r["success_time"] = "SUCCESS", _now_text()
        elif fault == "abnormal":
            r["status"] = "ABNORMAL"
        elif fault == "closed":
            r["status"] = "CLOSED"
            order["refunded"] -= refund
        elif fault == "processing":
            r["then_success"], r["queries_processing"] = True, 1
        answer = _wx_refund_body(r)
    if fault == "http_500_after":
        return _wx_error(500, "SYSTEM_ERROR", "system error, try again with the same out_refund_no (sandbox)")
    if fault == "timeout":
        time.sleep(TIMEOUT_DELAY)
        return _wx_answer(answer)
    if fault in ("abnormal", "closed"):
        _wx_notify_refund(no)
    elif fault is None and r["notify_url"] and request.args.get("notify", "1") != "0":
        threading.Thread(target=_wx_finish_refund, args=(no,), daemon=True).start()
    return _wx_answer(answer)


def _wx_notify_refund(no: str) -> int:
    """Tell our refund notify_url the refund's current status (REFUND.SUCCESS / .ABNORMAL / .CLOSED)."""
    with _lock:
        r = WX_REFUNDS[no]
        resource = {"mchid": sign.wx_mchid(), "out_trade_no": r["out_trade_no"],
                    "transaction_id": r["transaction_id"], "out_refund_no": no, "refund_id": r["refund_id"],
                    "refund_status": r["status"], "success_time": r.get("success_time"),
                    "user_received_account": "sandbox bank card",
                    "amount": {"total": r["total"], "refund": r["amount"], "payer_total": r["total"],
                               "payer_refund": r["amount"]}}
    if not r["notify_url"]:
        return 0
    headers, body = sign.wx_notification(f"REFUND.{r['status']}", resource, public_key_mode=r["pk_mode"])
    return _post(r["notify_url"], body, headers, "wechat-refund")


def _wx_finish_refund(no: str, delay: float = 0.05) -> None:
    time.sleep(delay)
    with _lock:
        r = WX_REFUNDS[no]
        r["status"], r["success_time"] = "SUCCESS", _now_text()
    _wx_notify_refund(no)


def wx_settle_abnormal(no: str, status: str = "SUCCESS") -> int:
    """The merchant settles an ABNORMAL refund in the merchant platform: SUCCESS (paid to the payer's
    balance) or CLOSED (the money went back to the merchant); WeChat Pay notifies. Returns the HTTP status
    of our notify endpoint's answer."""
    if status not in ("SUCCESS", "CLOSED"):
        raise ValueError("status: SUCCESS or CLOSED")
    with _lock:
        r = WX_REFUNDS[no]
        if r["status"] != "ABNORMAL":
            raise ValueError(f"refund {no} is {r['status']}, not ABNORMAL")
        r["status"] = status
        if status == "SUCCESS":
            r["success_time"] = _now_text()
        else:
            WX_ORDERS[r["out_trade_no"]]["refunded"] -= r["amount"]
    return _wx_notify_refund(no)


@bp.get("/v3/refund/domestic/refunds/<no>")
def wx_refund_query(no):
    fault = _fault("wechat.refund_query")
    _called("wechat.refund_query", refund_no=no, fault=fault)
    if fault == "http_500":
        return _wx_error(500, "SYSTEM_ERROR", "system error (sandbox)")
    with _lock:
        r = WX_REFUNDS.get(no)
        if r is None:
            return _wx_error(404, "RESOURCE_NOT_EXISTS", "no such refund (sandbox)")
        if r["status"] == "PROCESSING" and r.get("then_success"):  # the "processing" fault:
            if r["queries_processing"] > 0:
                r["queries_processing"] -= 1  # this query still says PROCESSING ...
            else:
                r["status"], r["success_time"] = "SUCCESS", _now_text()  # ... the next one SUCCESS
        answer = _wx_refund_body(r)
    return _wx_answer(answer)


@bp.get("/v3/certificates")
def wx_certificates():
    cert = sandbox_keys.read("wxpay_platform_cert.pem")
    return _wx_answer({"data": [{
        "serial_no": sandbox_keys.platform_cert_serial(), "effective_time": "2020-01-01T00:00:00+08:00",
        "expire_time": "2036-01-01T00:00:00+08:00", "encrypt_certificate": sign.wx_encrypt(cert, "certificate")}]})


@bp.get("/v3/bill/tradebill")
def wx_tradebill():
    day = request.args.get("bill_date", "")
    base = request.host_url.rstrip("/")
    return _wx_answer({"download_url": f"{base}/v3/billdownload/file?token={day}", "hash_type": "SHA1",
                       "hash_value": ""})


@bp.get("/v3/billdownload/file")
def wx_bill_download():
    day = request.args.get("token", "")
    header = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
              "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
              "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
    rows = [header]

    def row(*cells):
        rows.append(",".join("`" + str(c) for c in cells))
    with _lock:
        for o in WX_ORDERS.values():
            if o["transaction_id"] and o["success_time"][:10] == day:
                row(o["success_time"], o["appid"], sign.wx_mchid(), 0, "", o["transaction_id"],
                    o["out_trade_no"], o["openid"], "JSAPI", "SUCCESS", "OTHERS", "CNY", _yuan(o["amount"]),
                    "0.00", 0, 0, "0.00", "0.00", "", "", "recharge", "", "0.00", "0.60%", _yuan(o["amount"]),
                    "0.00", "")
        for r in WX_REFUNDS.values():
            if r["status"] == "SUCCESS" and (r.get("success_time") or "")[:10] == day:
                row(r["success_time"], WX_ORDERS[r["out_trade_no"]]["appid"], sign.wx_mchid(), 0, "",
                    r["transaction_id"],
                    r["out_trade_no"], "", "JSAPI", "REFUND", "OTHERS", "CNY", "0.00", "0.00", r["refund_id"],
                    r["out_refund_no"], _yuan(r["amount"]), "0.00", "ORIGINAL", "SUCCESS", "recharge", "",
                    "0.00", "0.60%", _yuan(r["total"]), _yuan(r["amount"]), "")
    rows.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额")
    return Response("\n".join(rows) + "\n", mimetype="text/plain")


def _yuan(fen: int) -> str:
    return format_fen(fen)


def wx_pay(no: str, *, notify: bool = True, amount_fen: int | None = None) -> dict:
    """The payer pays order ``no``; WeChat Pay tells our notify_url (unless notify is False)."""
    with _lock:
        order = WX_ORDERS[no]
        if order["state"] == "NOTPAY":
            order["state"], order["success_time"] = "SUCCESS", _now_text()
            order["transaction_id"] = "42" + secrets.token_hex(13)
        resource = _wx_transaction(order)
    if amount_fen is not None:
        resource["amount"]["total"] = resource["amount"]["payer_total"] = amount_fen
    status = None
    if notify and order["notify_url"]:
        headers, body = sign.wx_notification("TRANSACTION.SUCCESS", resource, public_key_mode=order["pk_mode"])
        status = _post(order["notify_url"], body, headers, "wechat-pay")
    return {"channel": "wechat", "transaction_id": order["transaction_id"], "notified": status}


# --- Alipay gateway ---------------------------------------------------------------------

@bp.post("/gateway.do")
def alipay_gateway():
    params = {**request.args.to_dict(), **request.form.to_dict()}
    method = params.get("method", "")
    if not sign.ali_verify_request(params):
        return Response(sign.ali_response(method or "error", {"code": "40002", "msg": "Invalid Arguments",
                                                               "sub_code": "isv.invalid-signature",
                                                               "sub_msg": "RSA2 signature does not verify"}),
                        mimetype="application/json")
    if params.get("app_id") != sign.alipay_appid():
        return _ali(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"})
    try:
        biz = json.loads(params.get("biz_content") or "{}")
    except ValueError:
        return _ali(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-biz"})
    handler = ALIPAY_METHODS.get(method)
    if handler is None:
        return _ali(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method"})
    answer = handler(biz, params)
    return answer if isinstance(answer, Response) else _ali(method, answer)


def _ali(method: str, payload: dict) -> Response:
    return Response(sign.ali_response(method, payload), mimetype="application/json;charset=utf-8")


def _fen(text) -> int:
    """An amount in yuan as Alipay takes it (at most two decimals); ValidationError otherwise."""
    return parse_yuan(str(text), field="amount", allow_zero=True)


def _ali_precreate(biz: dict, params: dict) -> dict:
    no = biz.get("out_trade_no")
    try:
        amount = _fen(biz.get("total_amount", ""))
    except ValidationError:
        return {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-total-amount"}
    with _lock:
        ALI_ORDERS.setdefault(no, {"out_trade_no": no, "amount": amount, "notify_url": params.get("notify_url"),
                                   "state": "WAIT_BUYER_PAY", "trade_no": None, "gmt_payment": None,
                                   "refunded": 0})
    return {"code": "10000", "msg": "Success", "out_trade_no": no,
            "qr_code": f"https://qr.alipay.com/sandbox{hashlib.sha1(no.encode()).hexdigest()[:16]}"}


def _ali_trade(order: dict) -> dict:
    out = {"code": "10000", "msg": "Success", "out_trade_no": order["out_trade_no"],
           "trade_status": order["state"], "total_amount": _yuan(order["amount"])}
    if order["trade_no"]:
        out.update(trade_no=order["trade_no"], buyer_pay_amount=_yuan(order["amount"]),
                   send_pay_date=order["gmt_payment"], buyer_logon_id="sandbox***@example.com")
    return out


def _ali_query(biz: dict, params: dict) -> dict:
    order = ALI_ORDERS.get(biz.get("out_trade_no") or "")
    if order is None:
        return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                "sub_msg": "no such trade (sandbox)"}
    return _ali_trade(order)


ALI_SYSTEM_ERROR = {"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "ACQ.SYSTEM_ERROR",
                    "sub_msg": "system error, try again with the same out_request_no (sandbox)"}


def _ali_refund(biz: dict, params: dict):
    no = biz.get("out_request_no") or biz.get("out_trade_no")
    fault = _fault("alipay.trade.refund")
    _called("alipay.trade.refund", appid=params.get("app_id"), refund_no=no, order_no=biz.get("out_trade_no"),
            fault=fault)
    if fault == "system_error":
        return dict(ALI_SYSTEM_ERROR)
    if fault == "http_502":
        return Response("", status=502)
    if fault == "refused":
        return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR",
                "sub_msg": "trade status does not allow a refund (sandbox)"}
    with _lock:
        order = ALI_ORDERS.get(biz.get("out_trade_no") or "")
        if order is None or order["state"] != "TRADE_SUCCESS":
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"}
        if no not in ALI_REFUNDS:
            try:
                amount = _fen(biz.get("refund_amount", "0"))
            except ValidationError:
                amount = 0
            if amount <= 0 or amount > order["amount"] - order["refunded"]:
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"}
            order["refunded"] += amount
            ALI_REFUNDS[no] = {"out_request_no": no, "out_trade_no": order["out_trade_no"], "amount": amount,
                               "trade_no": order["trade_no"],
                               "gmt_refund": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")}
            notify = order["notify_url"]
            fund_change = "Y"
        else:
            notify = None
            fund_change = "N"  # already refunded under this out_request_no: no money moves now
    if notify:
        body = sign.ali_notification({"trade_no": order["trade_no"], "out_trade_no": order["out_trade_no"],
                                      "out_biz_no": no, "trade_status": "TRADE_SUCCESS",
                                      "total_amount": _yuan(order["amount"]),
                                      "refund_fee": _yuan(order["refunded"]),
                                      "gmt_refund": ALI_REFUNDS[no]["gmt_refund"]})
        if fault is None:
            threading.Thread(target=_post, args=(notify, body, {"Content-Type": "application/x-www-form-urlencoded"},
                                                 "alipay-refund"), daemon=True).start()
        # with a fault the refund notification is lost: only a query finds the refund
    if fault == "system_error_after":
        return dict(ALI_SYSTEM_ERROR)
    if fault == "fund_change_n":
        fund_change = "N"
    if fault == "timeout":
        time.sleep(TIMEOUT_DELAY)
    return {"code": "10000", "msg": "Success", "trade_no": order["trade_no"], "out_trade_no": order["out_trade_no"],
            "fund_change": fund_change, "refund_fee": _yuan(order["refunded"])}


def _ali_refund_query(biz: dict, params: dict) -> dict:
    no = biz.get("out_request_no") or ""
    fault = _fault("alipay.trade.fastpay.refund.query")
    _called("alipay.trade.fastpay.refund.query", appid=params.get("app_id"), refund_no=no, fault=fault)
    if fault == "system_error":
        return dict(ALI_SYSTEM_ERROR)
    r = ALI_REFUNDS.get(no)
    if r is None or fault == "no_data":
        return {"code": "10000", "msg": "Success"}
    out = {"code": "10000", "msg": "Success", "out_trade_no": r["out_trade_no"], "out_request_no":
           r["out_request_no"], "trade_no": r["trade_no"], "refund_amount": _yuan(r["amount"]),
           "total_amount": _yuan(ALI_ORDERS[r["out_trade_no"]]["amount"]), "refund_status": "REFUND_SUCCESS"}
    if "gmt_refund_pay" in (biz.get("query_options") or []):
        out["gmt_refund_pay"] = r["gmt_refund"]
    return out


def _ali_bill_url(biz: dict, params: dict) -> dict:
    day = biz.get("bill_date", "")
    return {"code": "10000", "msg": "Success",
            "bill_download_url": f"{request.host_url.rstrip('/')}/_sandbox/alipay/bill/{day}.zip"}


ALIPAY_METHODS = {
    "alipay.trade.precreate": _ali_precreate,
    "alipay.trade.query": _ali_query,
    "alipay.trade.refund": _ali_refund,
    "alipay.trade.fastpay.refund.query": _ali_refund_query,
    "alipay.data.dataservice.bill.downloadurl.query": _ali_bill_url,
}


@bp.get("/_sandbox/alipay/bill/<day>.zip")
def alipay_bill(day):
    out = io.StringIO()
    out.write("#支付宝业务明细查询\n#账号：[sandbox]\n")
    w = csv.writer(out)
    w.writerow(["支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称",
                "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）",
                "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）", "券名称", "商家红包消费金额（元）",
                "卡消费金额（元）", "退款批次号/请求号", "服务费（元）", "分润（元）", "备注"])
    with _lock:
        for o in ALI_ORDERS.values():
            if o["trade_no"] and o["gmt_payment"][:10] == day:
                w.writerow([o["trade_no"], o["out_trade_no"], "交易", "recharge", o["gmt_payment"], o["gmt_payment"],
                            "", "", "", "", "sandbox", _yuan(o["amount"]), _yuan(o["amount"])] + [""] * 8
                           + ["", "0.00", "0.00", ""])
        for r in ALI_REFUNDS.values():
            if r["gmt_refund"][:10] == day:
                w.writerow([r["trade_no"], r["out_trade_no"], "退款", "recharge", r["gmt_refund"], r["gmt_refund"],
                            "", "", "", "", "sandbox", "-" + _yuan(r["amount"]), "-" + _yuan(r["amount"])]
                           + [""] * 8 + [r["out_request_no"], "0.00", "0.00", ""])
    out.write("#业务明细列表结束\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"2088000000000000{day.replace('-', '')}_业务明细.csv", out.getvalue().encode("gbk"))
    return Response(buf.getvalue(), mimetype="application/zip")


def alipay_pay(no: str, *, notify: bool = True, amount_fen: int | None = None) -> dict:
    with _lock:
        order = ALI_ORDERS[no]
        if order["state"] == "WAIT_BUYER_PAY":
            order["state"] = "TRADE_SUCCESS"
            order["trade_no"] = datetime.now(CHINA).strftime("%Y%m%d") + "22001" + secrets.token_hex(8)
            order["gmt_payment"] = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
    status = None
    if notify and order["notify_url"]:
        body = sign.ali_notification({
            "trade_no": order["trade_no"], "out_trade_no": no, "trade_status": "TRADE_SUCCESS",
            "total_amount": _yuan(order["amount"] if amount_fen is None else amount_fen),
            "receipt_amount": _yuan(order["amount"]), "buyer_id": "2088000000000001", "seller_id": "2088000000000000",
            "gmt_create": order["gmt_payment"], "gmt_payment": order["gmt_payment"]})
        status = _post(order["notify_url"], body, {"Content-Type": "application/x-www-form-urlencoded"}, "alipay-pay")
    return {"channel": "alipay", "transaction_id": order["trade_no"], "notified": status}


# --- sandbox controls -------------------------------------------------------------------

# Notifications sent after the payer's answer (``?notify=later``), for ``wait_for_later_notifications``.
LATER_NOTIFICATIONS: list[threading.Thread] = []


def wait_for_later_notifications(timeout: float = 10.0) -> None:
    """(Tests.) Until every ``?notify=later`` notification was sent and answered (the app's
    handler finished), at most ``timeout`` seconds."""
    while LATER_NOTIFICATIONS:
        LATER_NOTIFICATIONS.pop().join(timeout)



@bp.route("/_sandbox/pay/<no>", methods=["GET", "POST"])
def sandbox_pay(no):
    """GET: a page with a Pay button (the demo); POST: pay now (``?notify=0`` loses the callback,
    ``?notify=later`` sends it after answering)."""
    if no not in WX_ORDERS and no not in ALI_ORDERS:
        return jsonify({"error": f"no sandbox order {no}"}), 404
    if request.method == "GET":
        return Response(f"""<!doctype html><meta charset=utf-8><title>SANDBOX payment</title>
<h1 style="color:#b00">SANDBOX — no real money</h1><p>Order {no}</p>
<form method=post><button>Pay this order in the sandbox</button></form>""", mimetype="text/html")
    mode = request.args.get("notify", "1")
    pay = wx_pay if no in WX_ORDERS else alipay_pay
    if mode == "later":
        # As the real providers do: the payer's answer now, the notification afterwards from another thread.
        result = pay(no, notify=False)
        later = threading.Thread(target=pay, args=(no,), daemon=True)
        LATER_NOTIFICATIONS.append(later)
        later.start()
        return jsonify({"sandbox": True, **result, "notified": "later"})
    return jsonify({"sandbox": True, **pay(no, notify=mode != "0")})


@bp.post("/_sandbox/faults")
def sandbox_faults():
    """Queue faults: ``{"api": "wechat.refund", "faults": ["http_500_after"]}``; GET lists the modes."""
    data = request.get_json(force=True, silent=True) or {}
    faults = data.get("faults")
    if isinstance(faults, str):
        faults = [faults]
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        return jsonify({"error": "faults: a list of fault names"}), 400
    try:
        inject(str(data.get("api") or ""), *faults)
    except ValueError as exc:
        return jsonify({"error": str(exc)}), 400
    with _lock:
        return jsonify({"sandbox": True, "queued": {k: list(v) for k, v in FAULTS.items() if v}})


@bp.get("/_sandbox/faults")
def sandbox_fault_modes():
    with _lock:
        return jsonify({"sandbox": True, "modes": FAULT_MODES, "queued": {k: list(v) for k, v in FAULTS.items() if v},
                        "timeout_delay": TIMEOUT_DELAY})


@bp.get("/_sandbox/calls")
def sandbox_calls():
    with _lock:
        return jsonify({"sandbox": True, "calls": list(CALLS)})


@bp.get("/_sandbox/notifications")
def sandbox_notifications():
    with _lock:
        return jsonify({"sandbox": True, "sent": list(SENT)})

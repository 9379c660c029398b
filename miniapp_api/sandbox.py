"""SANDBOX: local fakes of WeChat login, WeChat Pay API v3 and the Alipay gateway.

Mounted by ``meterpay/sandbox.py`` (``meterpay sandbox --port 5055``) and by the tests. It keeps
orders in memory, verifies our signed requests with our sandbox public keys, signs its answers
and notifications with its own sandbox keys, and sends notifications to the ``notify_url`` we
gave it. A person (or a test) "pays" an order with ``POST /_sandbox/pay/<order no>``; add
``?notify=0`` to lose the callback. Never point production at it.

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
from decimal import Decimal

import requests
from flask import Blueprint, Response, jsonify, request

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


def reset() -> None:
    with _lock:
        for d in (WX_ORDERS, WX_REFUNDS, ALI_ORDERS, ALI_REFUNDS):
            d.clear()
        SENT.clear()


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
    args = request.args
    if args.get("appid") != sign.wx_appid() or args.get("secret") != sign.wx_secret():
        return jsonify({"errcode": 40125, "errmsg": "invalid appsecret (sandbox)"})
    code = args.get("js_code", "")
    if not code or code.startswith("bad"):
        return jsonify({"errcode": 40029, "errmsg": "invalid code (sandbox)"})
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
    if data.get("appid") != sign.wx_appid() or data.get("mchid") != sign.wx_mchid():
        return _wx_error(400, "PARAM_ERROR", "appid and mchid do not match (sandbox)")
    total = (data.get("amount") or {}).get("total")
    if not no or not isinstance(total, int) or total <= 0 or not (data.get("payer") or {}).get("openid"):
        return _wx_error(400, "PARAM_ERROR", "out_trade_no, amount.total and payer.openid are required")
    with _lock:
        order = WX_ORDERS.get(no)
        if order is None:
            order = WX_ORDERS[no] = {"out_trade_no": no, "amount": total, "notify_url": data.get("notify_url"),
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
    out = {"appid": sign.wx_appid(), "mchid": sign.wx_mchid(), "out_trade_no": order["out_trade_no"],
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
    with _lock:
        order = WX_ORDERS.get(data.get("out_trade_no") or "")
        if order is None or order["state"] not in ("SUCCESS", "REFUND"):
            return _wx_error(400, "INVALID_REQUEST", "order is not paid (sandbox)")
        no = data.get("out_refund_no")
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
                              "pk_mode": order["pk_mode"]}
        answer = _wx_refund_body(r)
    if r["notify_url"] and request.args.get("notify", "1") != "0":
        threading.Thread(target=_wx_finish_refund, args=(no,), daemon=True).start()
    return _wx_answer(answer)


def _wx_finish_refund(no: str, delay: float = 0.05) -> None:
    time.sleep(delay)
    with _lock:
        r = WX_REFUNDS[no]
        r["status"], r["success_time"] = "SUCCESS", _now_text()
        resource = {"mchid": sign.wx_mchid(), "out_trade_no": r["out_trade_no"],
                    "transaction_id": r["transaction_id"], "out_refund_no": no, "refund_id": r["refund_id"],
                    "refund_status": "SUCCESS", "success_time": r["success_time"],
                    "amount": {"total": r["total"], "refund": r["amount"], "payer_total": r["total"],
                               "payer_refund": r["amount"]}}
    headers, body = sign.wx_notification("REFUND.SUCCESS", resource, public_key_mode=r["pk_mode"])
    _post(r["notify_url"], body, headers, "wechat-refund")


@bp.get("/v3/refund/domestic/refunds/<no>")
def wx_refund_query(no):
    r = WX_REFUNDS.get(no)
    if r is None:
        return _wx_error(404, "RESOURCE_NOT_EXISTS", "no such refund (sandbox)")
    return _wx_answer(_wx_refund_body(r))


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
                row(o["success_time"], sign.wx_appid(), sign.wx_mchid(), 0, "", o["transaction_id"],
                    o["out_trade_no"], o["openid"], "JSAPI", "SUCCESS", "OTHERS", "CNY", _yuan(o["amount"]),
                    "0.00", 0, 0, "0.00", "0.00", "", "", "recharge", "", "0.00", "0.60%", _yuan(o["amount"]),
                    "0.00", "")
        for r in WX_REFUNDS.values():
            if r["status"] == "SUCCESS" and (r.get("success_time") or "")[:10] == day:
                row(r["success_time"], sign.wx_appid(), sign.wx_mchid(), 0, "", r["transaction_id"],
                    r["out_trade_no"], "", "JSAPI", "REFUND", "OTHERS", "CNY", "0.00", "0.00", r["refund_id"],
                    r["out_refund_no"], _yuan(r["amount"]), "0.00", "ORIGINAL", "SUCCESS", "recharge", "",
                    "0.00", "0.60%", _yuan(r["total"]), _yuan(r["amount"]), "")
    rows.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额")
    return Response("\n".join(rows) + "\n", mimetype="text/plain")


def _yuan(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


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
    return _ali(method, handler(biz, params))


def _ali(method: str, payload: dict) -> Response:
    return Response(sign.ali_response(method, payload), mimetype="application/json;charset=utf-8")


def _fen(text: str) -> int:
    return int(Decimal(text) * 100)


def _ali_precreate(biz: dict, params: dict) -> dict:
    no = biz.get("out_trade_no")
    try:
        amount = _fen(biz.get("total_amount", ""))
    except Exception:  # noqa: BLE001
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


def _ali_refund(biz: dict, params: dict) -> dict:
    with _lock:
        order = ALI_ORDERS.get(biz.get("out_trade_no") or "")
        if order is None or order["state"] != "TRADE_SUCCESS":
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"}
        no = biz.get("out_request_no") or biz["out_trade_no"]
        if no not in ALI_REFUNDS:
            amount = _fen(biz.get("refund_amount", "0"))
            if amount <= 0 or amount > order["amount"] - order["refunded"]:
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"}
            order["refunded"] += amount
            ALI_REFUNDS[no] = {"out_request_no": no, "out_trade_no": order["out_trade_no"], "amount": amount,
                               "trade_no": order["trade_no"],
                               "gmt_refund": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")}
            notify = order["notify_url"]
        else:
            notify = None
    if notify:
        body = sign.ali_notification({"trade_no": order["trade_no"], "out_trade_no": order["out_trade_no"],
                                      "out_biz_no": no, "trade_status": "TRADE_SUCCESS",
                                      "total_amount": _yuan(order["amount"]),
                                      "refund_fee": _yuan(order["refunded"]),
                                      "gmt_refund": ALI_REFUNDS[no]["gmt_refund"]})
        threading.Thread(target=_post, args=(notify, body, {"Content-Type": "application/x-www-form-urlencoded"},
                                             "alipay-refund"), daemon=True).start()
    return {"code": "10000", "msg": "Success", "trade_no": order["trade_no"], "out_trade_no": order["out_trade_no"],
            "fund_change": "Y", "refund_fee": _yuan(order["refunded"])}


def _ali_refund_query(biz: dict, params: dict) -> dict:
    r = ALI_REFUNDS.get(biz.get("out_request_no") or "")
    if r is None:
        return {"code": "10000", "msg": "Success"}
    return {"code": "10000", "msg": "Success", "out_trade_no": r["out_trade_no"], "out_request_no":
            r["out_request_no"], "trade_no": r["trade_no"], "refund_amount": _yuan(r["amount"]),
            "refund_status": "REFUND_SUCCESS"}


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

@bp.route("/_sandbox/pay/<no>", methods=["GET", "POST"])
def sandbox_pay(no):
    """GET: a page with a Pay button (the demo); POST: pay now (``?notify=0`` loses the callback)."""
    if no not in WX_ORDERS and no not in ALI_ORDERS:
        return jsonify({"error": f"no sandbox order {no}"}), 404
    if request.method == "GET":
        return Response(f"""<!doctype html><meta charset=utf-8><title>SANDBOX payment</title>
<h1 style="color:#b00">SANDBOX — no real money</h1><p>Order {no}</p>
<form method=post><button>Pay this order in the sandbox</button></form>""", mimetype="text/html")
    notify = request.args.get("notify", "1") != "0"
    result = wx_pay(no, notify=notify) if no in WX_ORDERS else alipay_pay(no, notify=notify)
    return jsonify({"sandbox": True, **result})


@bp.get("/_sandbox/notifications")
def sandbox_notifications():
    with _lock:
        return jsonify({"sandbox": True, "sent": list(SENT)})

"""Local stand-ins for the WeChat API pieces the bot uses, an SMS gateway and a voice gateway.

Mounted by ``meterpay.sandbox`` (demo, tests). Everything sent is kept in memory and readable at
``GET /_sandbox/bot/sent?kind=template|subscribe|custom|qrcode|sms|voice|webhook``; ``DELETE`` clears it.
``POST /_sandbox/bot/fail {"kind": "sms", "times": 2}`` makes the next two calls of a kind fail
with HTTP 500 (retry tests). Access tokens are issued by ``/cgi-bin/token`` and checked like
WeChat does (errcode 40001 for an unknown one). Never point production at it.
"""
from __future__ import annotations

import itertools
import secrets
import threading
import time

from flask import Blueprint, jsonify, request

bp = Blueprint("bot_sandbox", __name__)

_lock = threading.Lock()
_sent: list[dict] = []
_tokens: dict[str, str] = {}
_failures: dict[str, int] = {}
_ids = itertools.count(1)


def _record(kind: str, payload: dict) -> int:
    with _lock:
        n = next(_ids)
        _sent.append({"id": n, "kind": kind, "at": time.time(), "payload": payload})
        return n


def _should_fail(kind: str) -> bool:
    with _lock:
        left = _failures.get(kind, 0)
        if left > 0:
            _failures[kind] = left - 1
            return True
        return False


def _wechat_call(kind: str):
    token = request.args.get("access_token", "")
    if token not in _tokens:
        return None, (jsonify({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}), 200)
    if _should_fail(kind):
        return None, (jsonify({"errcode": -1, "errmsg": "system error"}), 500)
    payload = request.get_json(force=True, silent=True)
    if not isinstance(payload, dict) or not payload.get("touser" if kind != "qrcode" else "action_name"):
        return None, (jsonify({"errcode": 47001, "errmsg": "data format error"}), 200)
    payload["_appid"] = _tokens[token]
    return payload, None


@bp.get("/cgi-bin/token")
def token():
    appid, secret = request.args.get("appid", ""), request.args.get("secret", "")
    if request.args.get("grant_type") != "client_credential" or not appid or not secret:
        return jsonify({"errcode": 40013, "errmsg": "invalid appid"})
    tok = f"sandbox-{secrets.token_hex(12)}"
    with _lock:
        _tokens[tok] = appid
    return jsonify({"access_token": tok, "expires_in": 7200})


@bp.post("/cgi-bin/message/template/send")
def template_send():
    payload, error = _wechat_call("template")
    if error:
        return error
    return jsonify({"errcode": 0, "errmsg": "ok", "msgid": _record("template", payload)})


@bp.post("/cgi-bin/message/subscribe/send")
def subscribe_send():
    payload, error = _wechat_call("subscribe")
    if error:
        return error
    _record("subscribe", payload)
    return jsonify({"errcode": 0, "errmsg": "ok"})


@bp.post("/cgi-bin/message/custom/send")
def custom_send():
    payload, error = _wechat_call("custom")
    if error:
        return error
    _record("custom", payload)
    return jsonify({"errcode": 0, "errmsg": "ok"})


@bp.post("/cgi-bin/qrcode/create")
def qrcode_create():
    payload, error = _wechat_call("qrcode")
    if error:
        return error
    n = _record("qrcode", payload)
    ticket = f"sandbox-ticket-{n}"
    return jsonify({"ticket": ticket, "expire_seconds": payload.get("expire_seconds"),
                    "url": f"http://weixin.qq.com/q/{ticket}"})


def _gateway(kind: str, number_field: str, ref_field: str):
    if not request.headers.get("Authorization", "").startswith("APPCODE "):
        return jsonify({"Code": "Unauthorized", "Message": "missing APPCODE"}), 401
    if _should_fail(kind):
        return jsonify({"Code": "ServiceUnavailable", "Message": "try again"}), 500
    payload = request.get_json(force=True, silent=True)
    if not isinstance(payload, dict) or not str(payload.get(number_field, "")).strip():
        return jsonify({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": f"{number_field} missing"}), 200
    n = _record(kind, payload)
    return jsonify({"Code": "OK", "Message": "OK", ref_field: f"sandbox-{kind}-{n}"})


@bp.post("/sandbox/sms/send")
def sms_send():
    return _gateway("sms", "PhoneNumbers", "BizId")


@bp.post("/sandbox/voice/call")
def voice_call():
    return _gateway("voice", "CalledNumber", "CallId")


@bp.post("/sandbox/webhook")
def webhook_sink():
    """A webhook receiver to point a site's ``webhook_url`` at; keeps the body and signature."""
    if _should_fail("webhook"):
        return jsonify({"error": "try again"}), 500
    _record("webhook", {"json": request.get_json(force=True, silent=True),
                        "signature": request.headers.get("X-Meterpay-Signature", ""),
                        "raw": request.get_data(as_text=True)})
    return jsonify({"ok": True})


@bp.get("/_sandbox/bot/sent")
def sent():
    kind = request.args.get("kind")
    with _lock:
        rows = [r for r in _sent if kind is None or r["kind"] == kind]
    return jsonify(rows)


@bp.delete("/_sandbox/bot/sent")
def clear():
    with _lock:
        _sent.clear()
        _failures.clear()
    return jsonify({"cleared": True})


@bp.post("/_sandbox/bot/fail")
def fail():
    body = request.get_json(force=True, silent=True) or {}
    kind, times = str(body.get("kind", "")), int(body.get("times", 1))
    if kind not in ("template", "subscribe", "custom", "qrcode", "sms", "voice", "webhook"):
        return jsonify({"error": "kind: template|subscribe|custom|qrcode|sms|voice|webhook"}), 400
    with _lock:
        _failures[kind] = times
    return jsonify({"kind": kind, "times": times})

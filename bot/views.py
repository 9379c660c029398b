"""The official-account endpoint at /wechat (wechatpy throughout).

``GET`` answers WeChat's URL check (signature over token, timestamp, nonce; wrong → 403).
``POST`` takes plain and safe-mode (AES) messages: the signature is checked first, the XML is
parsed with entities off (``bot.xmlsafe``), a duplicate delivery of one message (WeChat retries
after 5 s) is answered "success" without running it again, and the reply is rendered by
wechatpy (encrypted back in safe mode). Slow answers go out later as customer-service messages.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot import chat, dedupe, settings, xmlsafe
from bot.messages import to_message
from core.db import session_scope

log = logging.getLogger(__name__)

bp = Blueprint("bot", __name__)


def _check_plain_signature() -> None:
    token = settings.wechat_token()
    if not token:
        abort(503, "METERPAY_WECHAT_TOKEN is not set")
    try:
        check_signature(token, request.args.get("signature", ""), request.args.get("timestamp", ""),
                        request.args.get("nonce", ""))
    except InvalidSignatureException:
        abort(403)


def _crypto() -> WeChatCrypto:
    key = settings.wechat_aes_key()
    if not key:
        abort(503, "METERPAY_WECHAT_AES_KEY is not set")
    return WeChatCrypto(settings.wechat_token(), key, settings.wechat_appid())


@bp.get("/wechat")
def verify():
    _check_plain_signature()
    return Response(request.args.get("echostr", ""), mimetype="text/plain")


@bp.post("/wechat")
def receive():
    _check_plain_signature()
    if (request.content_length or 0) > xmlsafe.MAX_BODY:
        abort(413)
    body = request.get_data(cache=False)
    safe_mode = request.args.get("encrypt_type", "raw") == "aes"
    try:
        outer = xmlsafe.parse(body)
        if safe_mode:
            crypto = _crypto()
            try:
                inner = crypto.decrypt_message(outer, request.args.get("msg_signature", ""),
                                               request.args.get("timestamp", ""), request.args.get("nonce", ""))
            except (InvalidSignatureException, InvalidAppIdException, KeyError):
                abort(403)
            data = xmlsafe.parse(inner)
        else:
            data = outer
    except xmlsafe.UnsafeXml as exc:
        log.warning("refused a /wechat body: %s", exc)
        abort(400)
    message = to_message(data)
    if not dedupe.first_time(_message_key(data)):
        return Response("success", mimetype="text/plain")
    with session_scope() as session:
        text = chat.answer(session, message)
    if not text:
        return Response("success", mimetype="text/plain")
    xml = TextReply(message=message, content=text).render()
    if safe_mode:
        xml = _crypto().encrypt_message(xml, request.args.get("nonce", ""), request.args.get("timestamp", ""))
    return Response(xml, mimetype="application/xml")


def _message_key(data: dict) -> str:
    if data.get("MsgId"):
        return f"msg:{data['MsgId']}"
    return f"evt:{data.get('FromUserName', '')}:{data.get('CreateTime', '')}:{data.get('Event', '')}"

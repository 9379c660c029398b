"""Build WeChat requests the way WeChat does (signatures, AES with wechatpy's own crypto)."""
from __future__ import annotations

import time

from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from tests.bot.conftest import AES_KEY, APPID, TOKEN


def signature(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, *extra)
    return signer.signature


def signed_query(token: str = TOKEN, nonce: str = "n0nce") -> dict:
    ts = str(int(time.time()))
    return {"signature": signature(token, ts, nonce), "timestamp": ts, "nonce": nonce}


def text_xml(openid: str, content: str, msg_id: int = 1) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_meterpay]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def event_xml(openid: str, event: str, key: str = "", created: int | None = None) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_meterpay]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>")


class WeChat:
    """Posts to /wechat as WeChat's servers would, plain or safe mode, and reads the reply."""

    def __init__(self, client, safe: bool = False):
        self.client = client
        self.safe = safe
        self.crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
        self._msg_id = 1000

    def post_xml(self, xml: str):
        query = signed_query()
        if self.safe:
            encrypted = self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
            from bot import xmlsafe
            outer = xmlsafe.parse(encrypted)
            query.update(encrypt_type="aes", msg_signature=outer["MsgSignature"])
            body = encrypted
        else:
            body = xml
        return self.client.post("/wechat", query_string=query, data=body.encode("utf-8"),
                                content_type="text/xml")

    def reply_of(self, res) -> str:
        assert res.status_code == 200, res.data
        raw = res.get_data(as_text=True)
        if raw == "success":
            return ""
        from bot import xmlsafe
        if self.safe:
            outer = xmlsafe.parse(raw)
            raw = self.crypto.decrypt_message(raw, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"])
        return xmlsafe.parse(raw)["Content"]

    def say(self, openid: str, content: str) -> str:
        self._msg_id += 1
        return self.reply_of(self.post_xml(text_xml(openid, content, self._msg_id)))

    def event(self, openid: str, event: str, key: str = "") -> str:
        self._msg_id += 1
        return self.reply_of(self.post_xml(event_xml(openid, event, key, created=self._msg_id)))

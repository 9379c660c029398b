"""The /wechat endpoint: URL check, signatures, plain and safe (AES) mode, hostile XML, retries."""
from __future__ import annotations

import pytest
from wechatpy.crypto import WeChatCrypto

from bot import xmlsafe
from tests.bot.conftest import AES_KEY, APPID, TOKEN
from tests.bot.helpers import WeChat, signed_query, text_xml

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol9;</Content><MsgId>2</MsgId></xml>"""


def test_url_check_echoes_with_a_good_signature(client, sandbox):
    res = client.get("/wechat", query_string={**signed_query(), "echostr": "hello-wechat"})
    assert res.status_code == 200 and res.get_data(as_text=True) == "hello-wechat"


def test_url_check_with_a_wrong_signature_is_forbidden(client, sandbox):
    query = {**signed_query(token="not-our-token"), "echostr": "x"}
    assert client.get("/wechat", query_string=query).status_code == 403


def test_a_message_with_a_wrong_signature_is_forbidden_and_not_run(client, sandbox, session):
    query = signed_query(token="not-our-token")
    res = client.post("/wechat", query_string=query, data=text_xml("o-any", "帮助").encode(), content_type="text/xml")
    assert res.status_code == 403


def test_plain_mode_text_gets_an_answer(client, sandbox):
    assert "余额" in WeChat(client).say("o-tenant", "帮助")


def test_unknown_words_get_help_not_silence(client, sandbox):
    assert "可以发送" in WeChat(client).say("o-tenant", "今天天气怎么样")


def test_safe_mode_round_trip_with_wechatpy_crypto(client, sandbox):
    wechat = WeChat(client, safe=True)
    res = wechat.post_xml(text_xml("o-tenant", "help", 77))
    raw = res.get_data(as_text=True)
    assert "<Encrypt>" in raw and "可以发送" not in raw  # the reply itself is encrypted
    assert "可以发送" in wechat.reply_of(res)


def test_safe_mode_with_a_wrong_msg_signature_is_forbidden(client, sandbox):
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    query = signed_query()
    encrypted = crypto.encrypt_message(text_xml("o-tenant", "help"), query["nonce"], query["timestamp"])
    query.update(encrypt_type="aes", msg_signature="0" * 40)
    res = client.post("/wechat", query_string=query, data=encrypted.encode(), content_type="text/xml")
    assert res.status_code == 403


def test_safe_mode_message_for_another_app_is_forbidden(client, sandbox):
    other = WeChatCrypto(TOKEN, AES_KEY, "wx-someone-else")
    query = signed_query()
    encrypted = other.encrypt_message(text_xml("o-tenant", "help"), query["nonce"], query["timestamp"])
    query.update(encrypt_type="aes", msg_signature=xmlsafe.parse(encrypted)["MsgSignature"])
    res = client.post("/wechat", query_string=query, data=encrypted.encode(), content_type="text/xml")
    assert res.status_code == 403


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_hostile_xml_is_refused(client, sandbox, payload):
    res = client.post("/wechat", query_string=signed_query(), data=payload, content_type="text/xml")
    assert res.status_code == 400
    with pytest.raises(xmlsafe.UnsafeXml):
        xmlsafe.parse(payload)


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_hostile_xml_inside_the_encrypted_envelope_is_refused(client, sandbox, payload):
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    query = signed_query()
    encrypted = crypto.encrypt_message(payload.decode(), query["nonce"], query["timestamp"])
    query.update(encrypt_type="aes", msg_signature=xmlsafe.parse(encrypted)["MsgSignature"])
    res = client.post("/wechat", query_string=query, data=encrypted.encode(), content_type="text/xml")
    assert res.status_code == 400


def test_entities_without_a_doctype_are_not_expanded():
    with pytest.raises(xmlsafe.UnsafeXml):
        xmlsafe.parse(b"<xml><Content>&lol;</Content></xml>")


def test_oversized_bodies_are_refused(client, sandbox):
    body = b"<xml><Content>" + b"a" * (xmlsafe.MAX_BODY + 10) + b"</Content></xml>"
    res = client.post("/wechat", query_string=signed_query(), data=body, content_type="text/xml")
    assert res.status_code == 413


def test_a_message_wechat_delivers_twice_runs_once(client, sandbox, session, factory):
    from sqlalchemy import select

    from core.models import AuditLog
    from core.sites.managers import create_manager
    site = factory.site("Dedupe site")
    factory.account(room=factory.room(site, "A301"), balance_fen=1000)
    manager = create_manager(session, "dedupe", "password123", sites=[site.name])
    manager.wechat_openid = "o-manager-dedupe"
    session.commit()
    wechat = WeChat(client)
    xml = text_xml("o-manager-dedupe", "房间 A301", msg_id=4242)
    first = wechat.reply_of(wechat.post_xml(xml))
    second = wechat.post_xml(xml)
    assert "A301" in first
    assert second.get_data(as_text=True) == "success"
    session.expire_all()
    assert len(session.scalars(select(AuditLog).where(AuditLog.action == "chat:status")).all()) == 1

"""``meterpay bench bot``: the /wechat endpoint in process, next to its own baseline.

On a scratch SQLite database it opens one account with a bound tenant, then times, with the
Flask test client and real wechatpy crypto: the URL check (signature only: the baseline), a
plain-mode "余额" (signature, safe XML parse, database read, reply), the same in safe (AES)
mode, and refusing a billion-laughs body. Prints one JSON line with microseconds per request
and each ``ratio`` against the baseline. Hostile XML must cost no more than a real message.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import click

from bench.fixtures import one_room_account
from meterpay.cli.base import friendly_errors

LAUGHS = ("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
          + "".join(f"<!ENTITY lol{i} \"{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}\">" for i in range(1, 10))
          + "]><xml><Content>&lol9;</Content></xml>")


@click.command("bot")
@click.option("--requests", "n", default=300, show_default=True, help="requests per kind")
@friendly_errors
def bench_bot(n: int) -> None:
    """Time /wechat: URL check, plain and AES balance queries, billion-laughs refusal."""
    import logging
    logging.getLogger("bot.views").setLevel(logging.ERROR)
    path = os.path.join(tempfile.mkdtemp(prefix="mp-bench-bot-"), "bench.db")
    url = f"sqlite:///{path}"
    os.environ.update(METERPAY_DATABASE_URL=url, METERPAY_WECHAT_TOKEN="bench-token",
                      METERPAY_WECHAT_AES_KEY="a" * 43, METERPAY_WECHAT_APPID="wxbench",
                      METERPAY_NOTIFY_DEFAULT_CHANNELS="")
    from core import jobs
    from core.config import reset_settings
    from core.db import reset_engine, session_scope
    from core.migrate import upgrade
    reset_settings()
    reset_engine()
    upgrade(url)
    jobs.set_eager(True)
    from core.models import Tenant
    with session_scope() as s:
        acct = one_room_account(s, site="Bench", floor="3", room="A301", tenant="Bench", serial="B-1",
                                balance_fen=8800)
        s.get(Tenant, acct.tenant_id).wechat_openid = "o-bench"
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.utils import WeChatSigner

    from meterpay.app import create_app
    client = create_app({"TESTING": True}).test_client()
    crypto = WeChatCrypto("bench-token", "a" * 43, "wxbench")

    def query(extra=()):
        ts, nonce = str(int(time.time())), "nonce"
        signer = WeChatSigner()
        signer.add_data("bench-token", ts, nonce)
        return {"signature": signer.signature, "timestamp": ts, "nonce": nonce}

    def text(i):
        return (f"<xml><ToUserName>gh</ToUserName><FromUserName>o-bench</FromUserName><CreateTime>{i}</CreateTime>"
                f"<MsgType>text</MsgType><Content>余额</Content><MsgId>{i}</MsgId></xml>")

    def timed(fn) -> float:
        fn(0)  # warm up
        start = time.perf_counter()
        for i in range(1, n + 1):
            fn(i)
        return (time.perf_counter() - start) / n * 1e6

    def url_check(i):
        assert client.get("/wechat", query_string={**query(), "echostr": "x"}).status_code == 200

    def plain(i):
        res = client.post("/wechat", query_string=query(), data=text(10_000 + i).encode(), content_type="text/xml")
        assert "88.00" in res.get_data(as_text=True)

    def safe(i):
        q = query()
        body = crypto.encrypt_message(text(20_000 + i), q["nonce"], q["timestamp"])
        from bot import xmlsafe
        q.update(encrypt_type="aes", msg_signature=xmlsafe.parse(body)["MsgSignature"])
        assert client.post("/wechat", query_string=q, data=body.encode(), content_type="text/xml").status_code == 200

    def laughs(i):
        res = client.post("/wechat", query_string=query(), data=LAUGHS.encode(), content_type="text/xml")
        assert res.status_code == 400

    base = timed(url_check)
    results = {"requests": n, "url_check_us": round(base, 1)}
    for name, fn in (("plain_balance", plain), ("aes_balance", safe), ("billion_laughs", laughs)):
        us = timed(fn)
        results[f"{name}_us"] = round(us, 1)
        results[f"{name}_ratio"] = round(us / base, 2)
    click.echo(json.dumps(results))
    reset_engine()
    os.remove(path)

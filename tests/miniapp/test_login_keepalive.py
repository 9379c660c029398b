"""Logins share one kept-alive connection pool to WeChat (issue 13 item 8: a new client, TCP
connection and proxy-environment scan per login cost ~3 ms of CPU; then the ``requests`` session's
own per-call work ~1 ms, so a login is a bare ``urllib3`` GET)."""
from __future__ import annotations

import pytest


def test_logins_share_one_pool_and_scan_no_environment(pay_env, monkeypatch):
    """(The test servers close every connection, so connections are not counted here; gunicorn,
    as in ``bench load``, keeps them.)"""
    import requests.utils
    import urllib3

    from miniapp_api import auth
    auth.code_to_openid("keepalive-warm")
    calls: list[str] = []
    real_init, real_scan = urllib3.PoolManager.__init__, requests.utils.get_environ_proxies

    def init(self, *args, **kwargs):
        calls.append("new pool")
        real_init(self, *args, **kwargs)

    def scan(*args, **kwargs):
        calls.append("environment scan")
        return real_scan(*args, **kwargs)
    monkeypatch.setattr(urllib3.PoolManager, "__init__", init)
    monkeypatch.setattr(requests.utils, "get_environ_proxies", scan)
    openids = {auth.code_to_openid(f"keepalive-{i}") for i in range(5)}
    assert len(openids) == 5
    assert calls == []


def test_the_proxy_environment_is_read_once_per_api_base(pay_env, monkeypatch):
    import urllib3

    from miniapp_api import auth
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setattr(auth, "_login_pools", {})
    pool = auth._login_pool("http://wechat.example")
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy.host == "proxy.invalid" and pool.proxy.port == 3128
    assert auth._login_pool("http://wechat.example") is pool
    monkeypatch.setenv("NO_PROXY", "wechat.direct")
    assert not isinstance(auth._login_pool("http://wechat.direct"), urllib3.ProxyManager)


def test_a_get_on_a_connection_closed_while_idle_is_retried_once_a_post_never():
    from urllib3.util.retry import Retry

    from core.utils import RETRY_IDLE_GET, keepalive_http_session
    for retry in (keepalive_http_session("http://wechat.example").get_adapter("http://wechat.example/").max_retries,
                  RETRY_IDLE_GET):
        assert isinstance(retry, Retry)
        assert retry.total == 1 and retry.read == 1
        assert retry.is_retry("GET", 200) is False
        assert "GET" in retry.allowed_methods and "POST" not in retry.allowed_methods


@pytest.mark.parametrize("status, body, code", [
    (200, b'{"errcode": 40029, "errmsg": "invalid code"}', "login_failed"),
    (200, b'{"session_key": "k"}', "login_failed"),
    (403, b"forbidden", "login_failed"),
    (502, b"bad gateway", "wechat_unreachable"),
    (200, b"<html>not json</html>", "wechat_unreachable"),
])
def test_what_wechat_answers_decides_the_error(pay_env, monkeypatch, status, body, code):
    from miniapp_api import auth

    class Answer:
        def __init__(self):
            self.status, self.data = status, body

    class Pool:
        def request(self, *args, **kwargs):
            return Answer()
    monkeypatch.setattr(auth, "_login_pool", lambda api_base: Pool())
    with pytest.raises(auth.MeterpayError) as err:
        auth.code_to_openid("any")
    assert err.value.code == code


def test_no_answer_is_unreachable_not_a_refused_code(pay_env, monkeypatch):
    import urllib3

    from miniapp_api import auth

    class Pool:
        def request(self, *args, **kwargs):
            raise urllib3.exceptions.MaxRetryError(None, "/sns/jscode2session", "connection refused")
    monkeypatch.setattr(auth, "_login_pool", lambda api_base: Pool())
    with pytest.raises(auth.WechatUnreachable):
        auth.code_to_openid("any")

"""Logins share one kept-alive connection to WeChat (issue 13 item 8: a new client, TCP
connection and proxy-environment scan per login cost ~3 ms of CPU)."""
from __future__ import annotations


def test_logins_share_one_http_session_and_scan_no_environment(pay_env, monkeypatch):
    """(The test servers close every connection, so connections are not counted here; gunicorn,
    as in ``bench load``, keeps them.)"""
    import requests.sessions

    from miniapp_api import auth
    auth.code_to_openid("keepalive-warm")
    calls: list[str] = []
    real_init, real_scan = requests.sessions.Session.__init__, requests.sessions.get_environ_proxies

    def init(self, *args, **kwargs):
        calls.append("new session")
        real_init(self, *args, **kwargs)

    def scan(*args, **kwargs):
        calls.append("environment scan")
        return real_scan(*args, **kwargs)
    monkeypatch.setattr(requests.sessions.Session, "__init__", init)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", scan)
    openids = {auth.code_to_openid(f"keepalive-{i}") for i in range(5)}
    assert len(openids) == 5
    assert calls == []


def test_the_proxy_environment_is_read_once_per_client(pay_env, monkeypatch):
    from miniapp_api import auth
    from miniapp_api import settings as cfg
    s = cfg.miniapp()
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setattr(auth, "_login_clients", {})
    client = auth._login_client(s.appid, s.secret, "http://wechat.example")
    assert client._http.trust_env is False
    assert client._http.proxies.get("http") == "http://proxy.invalid:3128"
    assert auth._login_client(s.appid, s.secret, "http://wechat.example") is client


def test_a_get_on_a_connection_closed_while_idle_is_retried_once_a_post_never():
    from urllib3.util.retry import Retry

    from core.utils import keepalive_http_session
    retry = keepalive_http_session("http://wechat.example").get_adapter("http://wechat.example/").max_retries
    assert isinstance(retry, Retry)
    assert retry.total == 1 and retry.read == 1
    assert retry.is_retry("GET", 200) is False
    assert "GET" in retry.allowed_methods and "POST" not in retry.allowed_methods

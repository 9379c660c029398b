"""wechatpy clients pointed at ``METERPAY_WECHAT_API_BASE`` (the real API, or the local sandbox).

One client per (app id, base) per process; access tokens live in Redis when
``METERPAY_REDIS_URL`` is set (shared by every worker), else in memory.
"""
from __future__ import annotations

import threading

from wechatpy import WeChatClient
from wechatpy.session.memorystorage import MemoryStorage

from bot import settings
from core.config import get_settings
from core.utils import keepalive_http_session

_clients: dict[tuple, MeterpayWeChatClient] = {}
_lock = threading.Lock()


class MeterpayWeChatClient(WeChatClient):
    """wechatpy's client with a configurable API base for every endpoint the bot uses."""

    def __init__(self, appid: str, secret: str, base: str, **kwargs):
        super().__init__(appid, secret, **kwargs)
        self.base = base.rstrip("/")
        self.API_BASE_URL = f"{self.base}/cgi-bin/"
        self.wxa.API_BASE_URL = f"{self.base}/"
        self.timeout = settings.http_timeout()
        self._http = keepalive_http_session(self.base)  # read the proxy environment once, keep connections

    def fetch_access_token(self):
        return self._fetch_access_token(url=f"{self.base}/cgi-bin/token",
                                        params={"grant_type": "client_credential", "appid": self.appid,
                                                "secret": self.secret})


def _storage():
    url = get_settings().redis_url
    if url:
        from redis import Redis
        from wechatpy.session.redisstorage import RedisStorage
        return RedisStorage(Redis.from_url(url), prefix="meterpay:wechat")
    return MemoryStorage()


def client(appid: str, secret: str) -> MeterpayWeChatClient:
    if not appid or not secret:
        raise RuntimeError("WeChat app id and secret are not configured")
    key = (appid, secret, settings.wechat_api_base(), get_settings().redis_url)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = MeterpayWeChatClient(appid, secret, settings.wechat_api_base(),
                                                         session=_storage())
        return found


def official_account() -> MeterpayWeChatClient:
    return client(settings.wechat_appid(), settings.wechat_secret())


def miniapp() -> MeterpayWeChatClient:
    return client(settings.miniapp_appid() or settings.wechat_appid(),
                  settings.miniapp_secret() or settings.wechat_secret())

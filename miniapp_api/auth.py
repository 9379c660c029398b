"""Tenant tokens: code2session through wechatpy, then a short-lived token signed with the secret key.

The token carries only the openid; what the openid may see is decided by its bindings on each
request (core.sites.selfservice), so unbinding takes effect at once.
"""
from __future__ import annotations

import functools
import threading
import time
from typing import Any

from flask import g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from core.config import get_settings
from core.errors import MeterpayError
from miniapp_api import settings as cfg

SALT = "meterpay-miniapp-login"


class Unauthorized(MeterpayError):
    code = "unauthorized"
    http_status = 401


class LoginFailed(MeterpayError):
    code = "login_failed"
    http_status = 401


class WechatUnreachable(MeterpayError):
    code = "wechat_unreachable"
    http_status = 502


@functools.lru_cache(maxsize=4)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(get_settings().secret_key)


# Tokens whose signature was verified already: (secret key, token) -> (openid, signed at, unix seconds).
# A hit skips the HMAC and the JSON decoding but not the age check; a token that never verified is
# never in here, and a changed secret key misses. Bounded: emptied when full.
_VERIFIED: dict[tuple[str, str], tuple[str, int]] = {}
_VERIFIED_MAX = 10_000


def issue_token(openid: str) -> str:
    return _serializer().dumps({"openid": openid})


def openid_from_token(token: str) -> str:
    ttl = cfg.token_ttl()
    key = (get_settings().secret_key, token)
    hit = _VERIFIED.get(key)
    if hit is not None:
        age = int(time.time()) - hit[1]
        if 0 <= age <= ttl:
            return hit[0]
        _VERIFIED.pop(key, None)
        raise Unauthorized("token expired; log in again")
    try:
        data, signed_at = _serializer().loads(token, max_age=ttl, return_timestamp=True)
    except SignatureExpired:
        raise Unauthorized("token expired; log in again") from None
    except BadSignature:
        raise Unauthorized("bad token") from None
    openid = data.get("openid") if isinstance(data, dict) else None
    if not isinstance(openid, str) or not openid:
        raise Unauthorized("bad token")
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = (openid, int(signed_at.timestamp()))
    return openid


_login_clients: dict[tuple[str, str, str], Any] = {}
_login_lock = threading.Lock()


def _login_client(appid: str, secret: str, api_base: str):
    """One wechatpy client per (app id, secret, API base) per process, shared by its threads, on a
    kept-alive HTTP session (``core.utils.keepalive_http_session``): a login costs one request on
    an open connection, not a new client, a new TCP connection and a scan of the proxy environment."""
    key = (appid, secret, api_base)
    found = _login_clients.get(key)
    if found is None:
        from wechatpy import WeChatClient

        from core.utils import keepalive_http_session
        with _login_lock:
            found = _login_clients.get(key)
            if found is None:
                found = WeChatClient(appid, secret, timeout=10)
                found._http = keepalive_http_session(api_base)
                _login_clients[key] = found
    return found


def code_to_openid(code: str) -> str:
    """WeChat's jscode2session through wechatpy (no access token is needed for this call)."""
    import requests
    from wechatpy.exceptions import WeChatClientException
    s = cfg.miniapp()
    client = _login_client(s.appid, s.secret, s.api_base)
    params = [("appid", s.appid), ("secret", s.secret), ("js_code", code), ("grant_type", "authorization_code")]
    try:
        # A list of params keeps wechatpy from fetching and adding an access token.
        result = client.get("sns/jscode2session", api_base_url=s.api_base + "/", params=params)
    except WeChatClientException as exc:
        # wechatpy wraps an HTTP error (a 5xx) as errcode None; -1 is WeChat's "system busy". Neither says
        # anything about the code: the tenant may try again, so 502, not 401.
        if exc.errcode in (None, -1):
            raise WechatUnreachable("WeChat login failed on WeChat's side; try again") from None
        raise LoginFailed(f"WeChat refused the code ({exc.errcode})") from None
    except requests.RequestException:
        raise WechatUnreachable("WeChat login is unreachable; try again") from None
    openid = (result or {}).get("openid")
    if not openid:
        raise LoginFailed("WeChat returned no openid")
    return openid


def tenant_required(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise Unauthorized("log in first: Authorization: Bearer <token>")
        g.openid = openid_from_token(header[7:].strip())
        return fn(*args, **kwargs)
    return wrapper

"""Tenant tokens: WeChat's code2session, then a short-lived token signed with the secret key.

The token carries only the openid; what the openid may see is decided by its bindings on each
request (core.sites.selfservice), so unbinding takes effect at once.
"""
from __future__ import annotations

import functools
import json
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


_login_pools: dict[str, Any] = {}
_login_lock = threading.Lock()


def _login_pool(api_base: str):
    """One ``urllib3`` pool per WeChat API base per process, shared by its threads
    (``core.utils.keepalive_pool``): a login is one GET on a kept-alive connection, without a
    ``requests`` session's per-call work, a new client or a scan of the proxy environment."""
    found = _login_pools.get(api_base)
    if found is None:
        from core.utils import keepalive_pool
        with _login_lock:
            found = _login_pools.get(api_base)
            if found is None:
                found = _login_pools[api_base] = keepalive_pool(api_base)
    return found


def code_to_openid(code: str) -> str:
    """WeChat's jscode2session (``GET {api_base}/sns/jscode2session``; no access token is needed).

    LoginFailed (401): WeChat answered with an errcode (a bad or used code, a wrong app secret), a
    4xx, or no openid. WechatUnreachable (502, try again): no answer, a 5xx, or not JSON. A GET
    on a connection WeChat closed while idle is tried once more."""
    import urllib3

    from core.utils import RETRY_IDLE_GET
    s = cfg.miniapp()
    try:
        res = _login_pool(s.api_base).request(
            "GET", s.api_base.rstrip("/") + "/sns/jscode2session",
            fields={"appid": s.appid, "secret": s.secret, "js_code": code, "grant_type": "authorization_code"},
            timeout=urllib3.Timeout(connect=5.0, read=10.0), retries=RETRY_IDLE_GET)
    except urllib3.exceptions.HTTPError:
        raise WechatUnreachable("WeChat login is unreachable; try again") from None
    if res.status >= 500:
        raise WechatUnreachable("WeChat login is unreachable; try again")
    if res.status >= 400:
        raise LoginFailed(f"WeChat refused the code (HTTP {res.status})")
    try:
        result = json.loads(res.data)
    except ValueError:
        raise WechatUnreachable("WeChat login answered with something else than JSON; try again") from None
    if not isinstance(result, dict):
        raise WechatUnreachable("WeChat login answered with something else than JSON; try again")
    errcode = result.get("errcode")
    if errcode not in (None, 0, "0"):
        raise LoginFailed(f"WeChat refused the code ({errcode})")
    openid = result.get("openid")
    if not openid or not isinstance(openid, str):
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

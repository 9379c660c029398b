"""How the sandbox WeChat Pay and Alipay sign, encrypt and verify (with the sandbox keys).

Used by the fake gateways in ``miniapp_api/sandbox.py`` and by tests that forge callbacks.
These are the providers' published algorithms: WeChat Pay v3 (RSA-SHA256 over
``ts\\nnonce\\nbody\\n``, resource encrypted with AES-256-GCM under the API v3 key) and Alipay
(RSA2 over the sorted ``k=v&...`` parameters).
"""
from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import config
from miniapp_api import sandbox_keys
from miniapp_api import settings as _declared  # noqa: F401  (declares the variables read here)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"


def _env(name: str, default: str) -> str:
    return config.raw(name) or default


def wx_appid() -> str:
    """The official account's app id."""
    return _env("METERPAY_WECHAT_APPID", sandbox_keys.WECHAT_APPID)


def wx_secret() -> str:
    return _env("METERPAY_WECHAT_SECRET", sandbox_keys.WECHAT_SECRET)


def _miniapp_pair() -> tuple[str, str]:
    appid_var, secret_var = config.miniapp_vars()
    if appid_var == "METERPAY_WECHAT_APPID":  # a configuration from before the two apps were apart
        return wx_appid(), wx_secret()
    return (_env(appid_var, sandbox_keys.MINIAPP_APPID), _env(secret_var, sandbox_keys.MINIAPP_SECRET))


def miniapp_appid() -> str:
    """The mini-program's app id."""
    return _miniapp_pair()[0]


def miniapp_secret() -> str:
    return _miniapp_pair()[1]


def wx_appids() -> set[str]:
    """The app ids bound to the sandbox merchant: the mini-program's and the official account's."""
    return {miniapp_appid(), wx_appid()}


def wx_mchid() -> str:
    return _env("METERPAY_WXPAY_MCHID", sandbox_keys.WXPAY_MCHID)


def wx_apiv3_key() -> str:
    return _env("METERPAY_WXPAY_APIV3_KEY", sandbox_keys.WXPAY_APIV3_KEY)


def alipay_appid() -> str:
    return _env("METERPAY_ALIPAY_APPID", sandbox_keys.ALIPAY_APPID)


@functools.lru_cache(maxsize=32)
def _load_private(pem: str):
    """A PEM private key, loaded once per text: OpenSSL 3 checks an RSA key as it loads it (tens of
    milliseconds), which made every signed sandbox answer slow."""
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _private(name: str):
    return _load_private(sandbox_keys.read(name))


def _merchant_public():
    path = config.raw("METERPAY_WXPAY_PRIVATE_KEY_FILE")
    pem = open(path).read() if path else sandbox_keys.read("wxpay_merchant_key.pem")
    return _load_private(pem).public_key()


def rsa_sha256(key, message: str) -> str:
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_sha1(key, message: str) -> str:
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA1())).decode()


def verify_sha256(public_key, message: str, sign: str) -> bool:
    try:
        public_key.verify(base64.b64decode(sign), message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, TypeError):  # a wrong signature, not base64, or none at all
        return False


# --- WeChat Pay -------------------------------------------------------------------------

def wx_serial(public_key_mode: bool) -> str:
    return sandbox_keys.WXPAY_PUBLIC_KEY_ID if public_key_mode else sandbox_keys.platform_cert_serial()


def wx_sign_headers(body: str, *, public_key_mode: bool = True, timestamp: int | None = None,
                    nonce: str | None = None) -> dict:
    """Headers WeChat Pay puts on an answer or a notification, signed with the platform key."""
    ts, nonce = str(int(timestamp if timestamp is not None else time.time())), nonce or secrets.token_hex(16)
    sig = rsa_sha256(_private("wxpay_platform_key.pem"), f"{ts}\n{nonce}\n{body}\n")
    return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": sig,
            "Wechatpay-Serial": wx_serial(public_key_mode), "Wechatpay-Signature-Type": SIGNATURE_TYPE}


def wx_encrypt(plaintext: str, associated_data: str, key: str | None = None) -> dict:
    nonce = secrets.token_hex(6)  # 12 characters, as WeChat Pay uses
    ct = AESGCM((key or wx_apiv3_key()).encode()).encrypt(nonce.encode(), plaintext.encode("utf-8"),
                                                           associated_data.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": associated_data,
            "ciphertext": base64.b64encode(ct).decode()}


def wx_notification(event_type: str, resource: dict, *, public_key_mode: bool = True,
                    timestamp: int | None = None, apiv3_key: str | None = None) -> tuple[dict, str]:
    """A signed, encrypted WeChat Pay notification: (headers, body)."""
    original_type = "transaction" if event_type.startswith("TRANSACTION.") else "refund"
    body = json.dumps({
        "id": secrets.token_hex(16), "create_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
        "resource_type": "encrypt-resource", "event_type": event_type, "summary": "sandbox",
        "resource": {**wx_encrypt(json.dumps(resource, ensure_ascii=False), original_type, apiv3_key),
                     "original_type": original_type},
    }, ensure_ascii=False)
    headers = {"Content-Type": "application/json", **wx_sign_headers(body, public_key_mode=public_key_mode,
                                                                     timestamp=timestamp)}
    return headers, body


def wx_verify_request(method: str, path: str, body: str, authorization: str) -> bool:
    """Check our merchant's Authorization header the way WeChat Pay does."""
    if not authorization.startswith(SIGNATURE_TYPE + " "):
        return False
    fields = {}
    for part in authorization[len(SIGNATURE_TYPE) + 1:].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v.strip('"')
    if fields.get("mchid") != wx_mchid():
        return False
    message = f"{method}\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n{body}\n"
    return verify_sha256(_merchant_public(), message, fields.get("signature", ""))


# --- Alipay -----------------------------------------------------------------------------

def ali_sign_content(params: dict) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type") and v != "")


def ali_sign(params: dict, *, sha1: bool = False) -> str:
    key = _private("alipay_platform_key.pem")
    content = ali_sign_content(params)
    return rsa_sha1(key, content) if sha1 else rsa_sha256(key, content)


def ali_notification(params: dict, *, sign_type: str = "RSA2", sha1: bool = False) -> bytes:
    """A signed Alipay notification body (form-encoded)."""
    params = {"notify_type": "trade_status_sync", "notify_id": secrets.token_hex(16), "charset": "utf-8",
              "version": "1.0", "app_id": alipay_appid(),
              "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"), **params}
    signed = {**params, "sign_type": sign_type, "sign": ali_sign(params, sha1=sha1)}
    return urlencode(signed).encode()


def ali_response(method: str, payload: dict) -> str:
    """A gateway answer: ``{"<method>_response": {...}, "sign": "..."}`` signed over the exact JSON text."""
    inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    sign = rsa_sha256(_private("alipay_platform_key.pem"), inner)
    return f'{{"{method.replace(".", "_")}_response":{inner},"sign":"{sign}"}}'


def ali_verify_request(params: dict) -> bool:
    if params.get("sign_type") != "RSA2" or not params.get("sign"):
        return False
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")
    pub = serialization.load_pem_public_key(sandbox_keys.read("alipay_app_pub.pem").encode())
    return verify_sha256(pub, content, params["sign"])

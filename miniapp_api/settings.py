"""Settings of the mini-program API and the payment providers, read from the environment each call.

Every variable is declared in the settings registry (the README's generated table). The two WeChat
apps are apart: ``METERPAY_MINIAPP_APPID``/``_SECRET`` is the mini-program (login, its WeChat Pay
orders), ``METERPAY_WECHAT_APPID``/``_SECRET`` the official account (its JSAPI pay; the bot); see
``core.config.miniapp_vars`` for a configuration from before they were apart.

With ``METERPAY_SANDBOX=1`` any credential left unset falls back to the locally generated sandbox
keys and ids (miniapp_api/sandbox_keys.py), so the demo runs with no real account; the API then
labels its answers ``"sandbox": true``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core import config
from core.config import Var, get_settings
from core.errors import MeterpayError, ValidationError

log = logging.getLogger(__name__)

config.declare(
    "miniapp",
    Var("METERPAY_WXPAY_MCHID", "str", None, "WeChat Pay merchant id"),
    Var("METERPAY_WXPAY_APIV3_KEY", "str", None, "API v3 key (decrypts notifications and certificates)", secret=True),
    Var("METERPAY_WXPAY_PRIVATE_KEY_FILE", "path", None, "merchant API private key (PEM)"),
    Var("METERPAY_WXPAY_CERT_SERIAL", "str", None, "merchant API certificate serial number"),
    Var("METERPAY_WXPAY_PUBLIC_KEY_FILE", "path", None,
        "WeChat Pay public key (PEM); with `_ID`: public-key mode, else platform-certificate mode"),
    Var("METERPAY_WXPAY_PUBLIC_KEY_ID", "str", None, "its id (`PUB_KEY_ID_...`)"),
    Var("METERPAY_WXPAY_API_BASE", "url", "https://api.mch.weixin.qq.com", "WeChat Pay API base"),
    Var("METERPAY_ALIPAY_APPID", "str", None, "Alipay app id"),
    Var("METERPAY_ALIPAY_PRIVATE_KEY_FILE", "path", None,
        "app private key (PEM, PKCS#1 or PKCS#8), signs RSA2 requests"),
    Var("METERPAY_ALIPAY_PUBLIC_KEY_FILE", "path", None, "Alipay public key (PEM), verifies answers and notifications"),
    Var("METERPAY_ALIPAY_GATEWAY", "url", "https://openapi.alipay.com/gateway.do", "Alipay gateway"),
    Var("METERPAY_PAY_NOTIFY_BASE", "url", None,
        "base of our callback URLs (`<base>/pay/wechat/notify`, `/pay/wechat/refund-notify`, `/pay/alipay/notify`); "
        "must be reachable by the provider over HTTPS in production", default_doc="`METERPAY_PUBLIC_URL`"),
    Var("METERPAY_PAY_PENDING_AFTER", "int", "180",
        "seconds an order waits for its callback before the query job asks", minimum=1),
    Var("METERPAY_PAY_POLL_QUERY_AFTER", "float", "5",
        "a tenant polling `GET /orders/{no}` on a pending order older than this makes us ask the provider "
        "(at most once per this many seconds per order)", minimum=0),
    Var("METERPAY_PAY_TIMEOUT", "float", "15",
        "seconds to wait for a payment provider's answer; no answer in time leaves a refund's outcome unknown "
        "(it is queried and sent again under the same refund number)", minimum=0.1),
    Var("METERPAY_MINIAPP_TOKEN_TTL", "int", "7200", "seconds a mini-program login token is valid"),
    Var("METERPAY_SANDBOX_KEY_DIR", "path", None,
        "where sandbox keys are generated and shared with `meterpay sandbox`", default_doc="`var/sandbox-keys`"),
)


@config.cross_check
def _wxpay_public_key_mode() -> list[str]:
    if config.is_set("METERPAY_WXPAY_PUBLIC_KEY_FILE") != config.is_set("METERPAY_WXPAY_PUBLIC_KEY_ID"):
        return ["METERPAY_WXPAY_PUBLIC_KEY_FILE and METERPAY_WXPAY_PUBLIC_KEY_ID: set both (public-key mode) or "
                "neither (platform-certificate mode)"]
    return []


@config.cross_check
def _key_files_exist() -> list[str]:
    found = []
    for name in ("METERPAY_WXPAY_PRIVATE_KEY_FILE", "METERPAY_WXPAY_PUBLIC_KEY_FILE",
                 "METERPAY_ALIPAY_PRIVATE_KEY_FILE", "METERPAY_ALIPAY_PUBLIC_KEY_FILE"):
        path = config.get(name)
        if path is not None and not path.is_file():
            found.append(f"{name}: no such file {str(path)!r}")
    return found


class NotConfigured(MeterpayError):
    code = "channel_not_configured"
    http_status = 503


def env(name: str, default: str | None = None) -> str | None:
    """The variable as text (stripped), else ``default``."""
    value = config.raw(name)
    return default if value is None else value


def sandbox() -> bool:
    return config.sandbox()


def _read_file(var: str, sandbox_file: str | None) -> str | None:
    name = env(var)
    if name:
        return Path(name).read_text()
    if sandbox() and sandbox_file:
        from miniapp_api import sandbox_keys
        return sandbox_keys.read(sandbox_file)
    return None


def _sandbox_default(var: str, attr: str) -> str | None:
    value = env(var)
    if value is None and sandbox():
        from miniapp_api import sandbox_keys
        return getattr(sandbox_keys, attr)
    return value


def notify_base() -> str:
    return (env("METERPAY_PAY_NOTIFY_BASE") or get_settings().public_url).rstrip("/")


def token_ttl() -> int:
    return config.get("METERPAY_MINIAPP_TOKEN_TTL")


def poll_query_after_seconds() -> float:
    return config.get("METERPAY_PAY_POLL_QUERY_AFTER")


def pending_after_seconds() -> int:
    return config.get("METERPAY_PAY_PENDING_AFTER")


def pay_timeout() -> float:
    return config.get("METERPAY_PAY_TIMEOUT")


_legacy_warned = False


def _miniapp_vars() -> tuple[str, str, str]:
    """(app id variable, secret variable, sandbox_keys prefix) of the mini-program (see core.config.miniapp_vars)."""
    global _legacy_warned
    appid_var, secret_var = config.miniapp_vars()
    if appid_var == "METERPAY_WECHAT_APPID":
        if not _legacy_warned:
            _legacy_warned = True
            log.warning("METERPAY_MINIAPP_APPID/_SECRET are unset: the mini-program uses METERPAY_WECHAT_APPID/_SECRET "
                        "(the configuration from before they were apart); set them to the mini-program's")
        return appid_var, secret_var, "WECHAT"
    return appid_var, secret_var, "MINIAPP"


@dataclass(frozen=True)
class MiniappSettings:
    """The mini-program's WeChat app (login through code2session)."""

    appid: str
    secret: str
    api_base: str


def miniapp() -> MiniappSettings:
    appid_var, secret_var, prefix = _miniapp_vars()
    appid = _sandbox_default(appid_var, f"{prefix}_APPID")
    secret = _sandbox_default(secret_var, f"{prefix}_SECRET")
    if not appid or not secret:
        missing = ", ".join(name for name, value in ((appid_var, appid), (secret_var, secret)) if not value)
        raise NotConfigured(f"mini-program login is not configured ({missing})")
    return MiniappSettings(appid, secret, config.get("METERPAY_WECHAT_API_BASE").rstrip("/"))


def miniapp_appid() -> str | None:
    """The mini-program's app id (its WeChat Pay orders), or None when it is not configured."""
    appid_var, _, prefix = _miniapp_vars()
    return _sandbox_default(appid_var, f"{prefix}_APPID")


def official_account_appid() -> str | None:
    """The official account's app id (its JSAPI pay), or None when it is not configured."""
    return _sandbox_default("METERPAY_WECHAT_APPID", "WECHAT_APPID")


@dataclass(frozen=True)
class WxPaySettings:
    miniapp_appid: str | None   # orders paid in the mini-program
    oa_appid: str | None        # orders paid in the official account (JSAPI); at least one of the two is set
    mchid: str
    apiv3_key: str
    private_key: str
    cert_serial: str
    public_key: str | None      # public-key mode when set (with public_key_id)
    public_key_id: str | None
    api_base: str
    notify_url: str
    refund_notify_url: str
    timeout: float = 15.0

    @property
    def mode(self) -> str:
        return "public-key" if self.public_key else "platform-certificate"

    def app_id_for(self, front: str) -> str:
        """The app id of an order paid from ``front``; NotConfigured naming the variable when it is unset."""
        if front == "miniapp":
            if not self.miniapp_appid:
                raise NotConfigured("WeChat Pay in the mini-program needs METERPAY_MINIAPP_APPID")
            return self.miniapp_appid
        if front == "official_account":
            if not self.oa_appid:
                raise NotConfigured("WeChat Pay in the official account needs METERPAY_WECHAT_APPID")
            return self.oa_appid
        raise ValidationError("front: must be miniapp or official_account", field="front")


def wxpay() -> WxPaySettings:
    mini, oa = miniapp_appid(), official_account_appid()
    mchid = _sandbox_default("METERPAY_WXPAY_MCHID", "WXPAY_MCHID")
    key = _sandbox_default("METERPAY_WXPAY_APIV3_KEY", "WXPAY_APIV3_KEY")
    serial = _sandbox_default("METERPAY_WXPAY_CERT_SERIAL", "WXPAY_CERT_SERIAL")
    private_key = _read_file("METERPAY_WXPAY_PRIVATE_KEY_FILE", "wxpay_merchant_key.pem")
    public_key_file = env("METERPAY_WXPAY_PUBLIC_KEY_FILE")
    public_key_id = env("METERPAY_WXPAY_PUBLIC_KEY_ID")
    if public_key_file is None and public_key_id is None and sandbox():
        from miniapp_api import sandbox_keys
        public_key, public_key_id = sandbox_keys.read("wxpay_platform_pub.pem"), sandbox_keys.WXPAY_PUBLIC_KEY_ID
    elif public_key_file and public_key_id:
        public_key = Path(public_key_file).read_text()
    elif public_key_file or public_key_id:
        raise NotConfigured("WeChat Pay public-key mode needs both METERPAY_WXPAY_PUBLIC_KEY_FILE and "
                            "METERPAY_WXPAY_PUBLIC_KEY_ID")
    else:
        public_key = None
    if not ((mini or oa) and mchid and key and serial and private_key):
        raise NotConfigured("WeChat Pay is not configured (METERPAY_WXPAY_MCHID, METERPAY_WXPAY_APIV3_KEY, "
                            "METERPAY_WXPAY_PRIVATE_KEY_FILE, METERPAY_WXPAY_CERT_SERIAL, and "
                            "METERPAY_MINIAPP_APPID or METERPAY_WECHAT_APPID)")
    base = notify_base()
    return WxPaySettings(mini, oa, mchid, key, private_key, serial, public_key, public_key_id,
                         env("METERPAY_WXPAY_API_BASE", "https://api.mch.weixin.qq.com").rstrip("/"),
                         f"{base}/pay/wechat/notify", f"{base}/pay/wechat/refund-notify", pay_timeout())


@dataclass(frozen=True)
class AlipaySettings:
    appid: str
    private_key: str
    public_key: str
    gateway: str
    notify_url: str
    timeout: float = 15.0


def alipay() -> AlipaySettings:
    appid = _sandbox_default("METERPAY_ALIPAY_APPID", "ALIPAY_APPID")
    private_key = _read_file("METERPAY_ALIPAY_PRIVATE_KEY_FILE", "alipay_app_key.pem")
    public_key = _read_file("METERPAY_ALIPAY_PUBLIC_KEY_FILE", "alipay_platform_pub.pem")
    if not (appid and private_key and public_key):
        raise NotConfigured("Alipay is not configured (METERPAY_ALIPAY_APPID, METERPAY_ALIPAY_PRIVATE_KEY_FILE, "
                            "METERPAY_ALIPAY_PUBLIC_KEY_FILE)")
    return AlipaySettings(appid, private_key, public_key,
                          env("METERPAY_ALIPAY_GATEWAY", "https://openapi.alipay.com/gateway.do"),
                          f"{notify_base()}/pay/alipay/notify", pay_timeout())

"""The bot's settings, declared in the settings registry (``core.config``) and read at each call.

Every variable is listed in the README's generated table.
"""
from __future__ import annotations

from core import config
from core.config import Var

config.declare(
    "bot",
    Var("METERPAY_WECHAT_TOKEN", "str", None,
        "official-account token (URL check and message signatures); `/wechat` answers 503 without it", secret=True),
    Var("METERPAY_WECHAT_AES_KEY", "str", None, "EncodingAESKey (43 characters) for safe mode", secret=True),
    Var("METERPAY_WECHAT_TEMPLATE_BALANCE", "str", None, "template id for balance alarms"),
    Var("METERPAY_WECHAT_TEMPLATE_DEVICE", "str", None, "template id for device alarms", default_doc="balance's"),
    Var("METERPAY_WECHAT_TEMPLATE_SUPPLY", "str", None, "template id for cut/restore notices",
        default_doc="balance's"),
    Var("METERPAY_MINIAPP_TEMPLATE_BALANCE", "str", None, "subscribe-message template id for balance alarms"),
    Var("METERPAY_MINIAPP_TEMPLATE_SUPPLY", "str", None, "subscribe-message template id for supply notices",
        default_doc="balance's"),
    Var("METERPAY_MINIAPP_RECHARGE_PAGE", "str", "pages/recharge/index", "mini-program page of the recharge link"),
    Var("METERPAY_SMS_URL", "url", None, "SMS gateway endpoint (sandbox: `<sandbox>/sandbox/sms/send`)"),
    Var("METERPAY_SMS_KEY", "str", None, "SMS APPCODE", secret=True),
    Var("METERPAY_SMS_SIGN", "str", "meterpay", "SMS signature name"),
    Var("METERPAY_SMS_TEMPLATE", "str", "SMS_BALANCE", "SMS template code"),
    Var("METERPAY_VOICE_URL", "url", None, "voice gateway endpoint (sandbox: `<sandbox>/sandbox/voice/call`)"),
    Var("METERPAY_VOICE_KEY", "str", None, "voice APPCODE", secret=True),
    Var("METERPAY_VOICE_TEMPLATE", "str", "TTS_BALANCE", "TTS template code"),
    Var("METERPAY_SMTP_HOST", "str", None, "SMTP server; email is off without it"),
    Var("METERPAY_SMTP_PORT", "int", "25", "SMTP port", minimum=1),
    Var("METERPAY_SMTP_USER", "str", None, "SMTP login"),
    Var("METERPAY_SMTP_PASSWORD", "str", None, "SMTP password", secret=True),
    Var("METERPAY_SMTP_FROM", "str", "meterpay@localhost", "sender address"),
    Var("METERPAY_SMTP_STARTTLS", "bool", "0", "`1` to STARTTLS"),
    Var("METERPAY_WEBHOOK_SECRET", "str", None, "HMAC-SHA256 key of `X-Meterpay-Signature`", secret=True),
    Var("METERPAY_NOTIFY_TIMEOUT", "float", "10", "seconds for one HTTP/SMTP delivery", minimum=0.1),
    Var("METERPAY_BOT_CONFIRM_MINUTES", "int", "5", "how long a confirmation code is valid", minimum=1),
)


# With METERPAY_SANDBOX=1 (the demo) a setting left unset falls back to these, all pointing at
# the local sandbox (``meterpay sandbox``), so alarms and chat work with no real account.
SANDBOX_DEFAULTS = {
    "METERPAY_WECHAT_TOKEN": "sandbox-token",
    "METERPAY_WECHAT_AES_KEY": "c2FuZGJveC1hZXMta2V5LW9mLTMyLWJ5dGVzLWxvbmc",
    "METERPAY_WECHAT_APPID": "wxsandbox00000001",
    "METERPAY_WECHAT_SECRET": "sandbox-secret",
    "METERPAY_WECHAT_TEMPLATE_BALANCE": "sandbox-tpl-balance",
    "METERPAY_WECHAT_TEMPLATE_DEVICE": "sandbox-tpl-device",
    "METERPAY_WECHAT_TEMPLATE_SUPPLY": "sandbox-tpl-supply",
    "METERPAY_MINIAPP_APPID": "wxsandboxmini0001",
    "METERPAY_MINIAPP_SECRET": "sandbox-mini-secret",
    "METERPAY_MINIAPP_TEMPLATE_BALANCE": "sandbox-sub-balance",
    "METERPAY_SMS_URL": "{base}/sandbox/sms/send",
    "METERPAY_SMS_KEY": "sandbox",
    "METERPAY_VOICE_URL": "{base}/sandbox/voice/call",
    "METERPAY_VOICE_KEY": "sandbox",
}


def sandbox() -> bool:
    return config.sandbox()


def env(name: str, default: str = "") -> str:
    """The variable as text: its value, else the sandbox's stand-in (sandbox mode), else ``default``,
    else its declared default."""
    value = config.raw(name)
    if value is None and sandbox() and name in SANDBOX_DEFAULTS:
        return SANDBOX_DEFAULTS[name].format(base=wechat_api_base())
    if value is None:
        declared = config.get(name)
        return default or ("" if declared is None else str(declared))
    return value


def wechat_token() -> str:
    return env("METERPAY_WECHAT_TOKEN")


def wechat_aes_key() -> str:
    return env("METERPAY_WECHAT_AES_KEY")


def wechat_appid() -> str:
    """The official account's app id (the bot, template messages)."""
    return env("METERPAY_WECHAT_APPID")


def wechat_secret() -> str:
    return env("METERPAY_WECHAT_SECRET")


def wechat_api_base() -> str:
    return config.get("METERPAY_WECHAT_API_BASE").rstrip("/")


def miniapp_appid() -> str:
    """The mini-program's app id, for links in template messages and for subscribe messages. Only
    METERPAY_MINIAPP_APPID (or the sandbox's): a template message never links to the official account's id.
    (Subscribe messages fall back to the METERPAY_WECHAT_* pair while no METERPAY_MINIAPP_* is set, as before.)"""
    return env("METERPAY_MINIAPP_APPID")


def miniapp_secret() -> str:
    return env("METERPAY_MINIAPP_SECRET")


def miniapp_recharge_page() -> str:
    return env("METERPAY_MINIAPP_RECHARGE_PAGE", "pages/recharge/index")


def template_id(name: str) -> str:
    """METERPAY_WECHAT_TEMPLATE_BALANCE / _DEVICE / _SUPPLY, METERPAY_MINIAPP_TEMPLATE_BALANCE / ..."""
    return env(name)


def confirm_minutes() -> int:
    return config.get("METERPAY_BOT_CONFIRM_MINUTES")


def http_timeout() -> float:
    return config.get("METERPAY_NOTIFY_TIMEOUT")

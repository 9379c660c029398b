"""The bot's settings, read from the environment each time (tests change them per test).

Every variable is listed in docs/bot.md.
"""
from __future__ import annotations

import os


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
    "METERPAY_MINIAPP_TEMPLATE_BALANCE": "sandbox-sub-balance",
    "METERPAY_SMS_URL": "{base}/sandbox/sms/send",
    "METERPAY_SMS_KEY": "sandbox",
    "METERPAY_VOICE_URL": "{base}/sandbox/voice/call",
    "METERPAY_VOICE_KEY": "sandbox",
}


def sandbox() -> bool:
    return os.environ.get("METERPAY_SANDBOX", "0").strip().lower() in ("1", "true", "yes", "on")


def env(name: str, default: str = "") -> str:
    value = os.environ.get(name)
    if (value is None or value == "") and sandbox() and name in SANDBOX_DEFAULTS:
        return SANDBOX_DEFAULTS[name].format(base=wechat_api_base())
    return default if value is None or value == "" else value


def wechat_token() -> str:
    return env("METERPAY_WECHAT_TOKEN")


def wechat_aes_key() -> str:
    return env("METERPAY_WECHAT_AES_KEY")


def wechat_appid() -> str:
    return env("METERPAY_WECHAT_APPID")


def wechat_secret() -> str:
    return env("METERPAY_WECHAT_SECRET")


def wechat_api_base() -> str:
    return (os.environ.get("METERPAY_WECHAT_API_BASE") or "https://api.weixin.qq.com").rstrip("/")


def miniapp_appid() -> str:
    return env("METERPAY_MINIAPP_APPID")


def miniapp_secret() -> str:
    return env("METERPAY_MINIAPP_SECRET")


def miniapp_recharge_page() -> str:
    return env("METERPAY_MINIAPP_RECHARGE_PAGE", "pages/recharge/index")


def template_id(name: str) -> str:
    """METERPAY_WECHAT_TEMPLATE_BALANCE / _DEVICE / _SUPPLY, METERPAY_MINIAPP_TEMPLATE_BALANCE / ..."""
    return env(name)


def confirm_minutes() -> int:
    return int(env("METERPAY_BOT_CONFIRM_MINUTES", "5"))


def http_timeout() -> float:
    return float(env("METERPAY_NOTIFY_TIMEOUT", "10"))

"""The bot's settings, read from the environment each time (tests change them per test).

Every variable is listed in docs/bot.md.
"""
from __future__ import annotations

import os


def env(name: str, default: str = "") -> str:
    value = os.environ.get(name)
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
    return env("METERPAY_WECHAT_API_BASE", "https://api.weixin.qq.com").rstrip("/")


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

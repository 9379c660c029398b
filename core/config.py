"""Settings from environment variables (and an optional ``.env`` file).

Every variable is named ``METERPAY_*`` and documented in the README. ``get_settings()``
returns one cached ``Settings``; tests call ``reset_settings()`` after changing the env.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:  # pragma: no cover - python-dotenv is a dependency
        return
    load_dotenv(os.environ.get("METERPAY_ENV_FILE", ROOT / ".env"), override=False)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=lambda: f"sqlite:///{ROOT / 'var' / 'meterpay.db'}")
    redis_url: str | None = None
    secret_key: str = "dev-insecure-change-me"
    port: int = 5000
    timezone: str = "Asia/Shanghai"
    # Largest single money movement a front may ask for (recharge, refund, adjustment), in fen.
    max_amount_fen: int = 5_000_000
    # Where web pages and QR codes point tenants to (used in links).
    public_url: str = "http://127.0.0.1:5000"
    log_level: str = "INFO"

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _parse_yuan_to_fen(text: str) -> int:
    return int((Decimal(text) * 100).to_integral_value())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    _load_dotenv()
    defaults = Settings()
    port = int(_env("METERPAY_PORT", str(defaults.port)))
    max_amount = _env("METERPAY_MAX_AMOUNT")
    return Settings(
        database_url=_env("METERPAY_DATABASE_URL", defaults.database_url),
        redis_url=_env("METERPAY_REDIS_URL"),
        secret_key=_env("METERPAY_SECRET_KEY", defaults.secret_key),
        port=port,
        timezone=_env("METERPAY_TIMEZONE", defaults.timezone),
        max_amount_fen=_parse_yuan_to_fen(max_amount) if max_amount else defaults.max_amount_fen,
        public_url=_env("METERPAY_PUBLIC_URL", f"http://127.0.0.1:{port}"),
        log_level=_env("METERPAY_LOG_LEVEL", defaults.log_level),
    )


def reset_settings() -> None:
    get_settings.cache_clear()


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]

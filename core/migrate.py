"""Alembic, driven from code: ``meterpay db upgrade`` and the test fixtures call ``upgrade()``."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.config import get_settings

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    url = url or get_settings().database_url
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def current_heads(url: str | None = None) -> tuple[str, ...]:
    from alembic.script import ScriptDirectory
    return tuple(ScriptDirectory.from_config(alembic_config(url)).get_heads())

"""``meterpay`` console script. Every module in this package adds its commands to ``cli``."""
from __future__ import annotations

import importlib
import pkgutil

from meterpay.cli.base import cli


def _load_commands() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_load_commands()


def main() -> None:
    from core.signals import load_listeners
    load_listeners()
    cli(prog_name="meterpay")

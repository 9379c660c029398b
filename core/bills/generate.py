"""PLACEHOLDER (``monthend`` branch) for the ``bills`` branch's bill generation: same signature,
creates nothing. The month-end run (``core.monthend.run``) calls it after charges and apportionment."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session


@dataclass
class GenerateResult:
    count: int = 0  # bills created (or, previewing, that would be)
    lines: list[dict] = field(default_factory=list)  # {room, kind: energy|charge|apportion, code, amount_fen}


def generate_for_period(session: Session, site_id: int, period: str, *, preview: bool, actor: str,
                        front: str) -> GenerateResult:
    """Draft bills of site ``site_id`` for month ``period`` (``YYYY-MM``). Placeholder: nothing."""
    return GenerateResult()

"""Fee status of an account from its balance and alarm levels (shared by monitor, bot, alarms)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Default three alarm levels (yuan 50, 20, 0) when neither the account nor its site sets them.
DEFAULT_ALARM_LEVELS: tuple[dict[str, int], ...] = (
    {"amount_fen": 5000, "times": 1, "every_minutes": 0},
    {"amount_fen": 2000, "times": 2, "every_minutes": 360},
    {"amount_fen": 0, "times": 3, "every_minutes": 240},
)
FEE_STATUSES = ("normal", "alarm1", "alarm2", "alarm3", "arrears", "keep_power", "closed")


@dataclass(frozen=True)
class AlarmLevel:
    level: int          # 1, 2, 3
    amount_fen: int     # fires when the balance falls to or below this
    times: int          # how many notifications per crossing
    every_minutes: int  # spacing between repeated notifications


def alarm_levels(account_levels: list[dict[str, Any]] | None,
                 site_settings: dict[str, Any] | None) -> list[AlarmLevel]:
    """The account's own levels, else the site's (settings["alarm_levels"]), else the defaults."""
    raw = account_levels or (site_settings or {}).get("alarm_levels") or list(DEFAULT_ALARM_LEVELS)
    levels = [AlarmLevel(i + 1, int(r["amount_fen"]), int(r.get("times", 1)), int(r.get("every_minutes", 0)))
              for i, r in enumerate(raw[:3])]
    return levels


def alarm_level_for(balance_fen: int, levels: list[AlarmLevel]) -> int:
    """0 when above every level, else the deepest level reached (levels sorted high to low)."""
    reached = 0
    for lvl in sorted(levels, key=lambda level: -level.amount_fen):
        if balance_fen <= lvl.amount_fen:
            reached = lvl.level
    return reached


def fee_status(balance_fen: int, levels: list[AlarmLevel], *, keep_power: bool = False,
               closed: bool = False) -> str:
    if closed:
        return "closed"
    if keep_power:
        return "keep_power"
    if balance_fen < 0:
        return "arrears"
    level = alarm_level_for(balance_fen, levels)
    return f"alarm{level}" if level else "normal"

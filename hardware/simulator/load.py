"""A daily load shape: how hard a shop, office or flat draws at each hour (share of its peak)."""
from __future__ import annotations

import math

# 24 hourly factors of a small shop/office: quiet at night, busy 10-12 and 14-19.
SHAPE = (0.15, 0.12, 0.1, 0.1, 0.1, 0.12, 0.2, 0.35, 0.55, 0.75, 0.9, 0.95,
         0.8, 0.75, 0.9, 0.95, 0.95, 0.9, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2)


def factor(hour_of_day: float) -> float:
    """Interpolated share of peak load at a (fractional) hour of the day."""
    h = hour_of_day % 24
    lo = int(math.floor(h))
    frac = h - lo
    return SHAPE[lo] * (1 - frac) + SHAPE[(lo + 1) % 24] * frac


def period_of(hour: int, month: int) -> str:
    """Guangdong commercial TOU: peak 10-12 and 14-19, valley 0-8, flat otherwise; sharp 11-12 and
    15-17 in July-September. The simulator books energy into the rate registers with it."""
    if 7 <= month <= 9 and (hour == 11 or 15 <= hour < 17):
        return "sharp"
    if 10 <= hour < 12 or 14 <= hour < 19:
        return "peak"
    if hour < 8:
        return "valley"
    return "flat"

"""A daily load shape: how hard a shop, office or flat draws at each hour (share of its peak)."""
from __future__ import annotations

import math

from core.tariffs.calendar import guangdong_commercial_period

# 24 hourly factors of a small shop/office: quiet at night, busy 10-12 and 14-19.
SHAPE = (0.15, 0.12, 0.1, 0.1, 0.1, 0.12, 0.2, 0.35, 0.55, 0.75, 0.9, 0.95,
         0.8, 0.75, 0.9, 0.95, 0.95, 0.9, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2)


def factor(hour_of_day: float) -> float:
    """Interpolated share of peak load at a (fractional) hour of the day."""
    h = hour_of_day % 24
    lo = int(math.floor(h))
    frac = h - lo
    return SHAPE[lo] * (1 - frac) + SHAPE[(lo + 1) % 24] * frac


period_of = guangdong_commercial_period  # the TOU periods the simulated meters book energy into

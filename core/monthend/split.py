"""Largest remainder (Hamilton): split an exact number of fen over weights so the parts add up.

``split(total_fen, [(account_id, weight), ...])``: each part is first the floor of
``total * weight / sum(weights)`` in fen; the fen left over (fewer than the number of parts) go one
each to the largest remainders. Ties -- equal remainders -- go to the lower account id first. The
weights are Decimals (areas, ratios, days x area, kWh) and are compared exactly (as integers after
scaling by 10^6, enough for areas to 0.01 m^2 times days and quantities to 0.001), so no float is
involved and the result does not depend on the input order.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from core.errors import ValidationError

SCALE = 6  # decimal places of a weight that count


def split(total_fen: int, weights: Iterable[tuple[int, Decimal]]) -> dict[int, int]:
    """account id -> fen, summing exactly to ``total_fen`` (>= 0). Weights must be >= 0; parts of
    weight 0 get 0. Raises ValidationError when no weight is positive (and total is not 0) or an
    account id appears twice."""
    items = sorted((int(a), _units(w)) for a, w in weights)
    if len({a for a, _ in items}) != len(items):
        raise ValidationError("one account twice in a split")
    if not isinstance(total_fen, int) or total_fen < 0:
        raise ValidationError("the amount to split must be integer fen >= 0")
    out = {a: 0 for a, _ in items}
    whole = sum(u for _, u in items)
    if total_fen == 0:
        return out
    if whole <= 0:
        raise ValidationError("nothing to split over: every weight is 0")
    remainders = []
    for a, u in items:
        q, r = divmod(total_fen * u, whole)
        out[a] = q
        remainders.append((-r, a))
    left = total_fen - sum(out.values())
    for _, a in sorted(remainders)[:left]:  # largest remainder first, then the lower account id
        out[a] += 1
    return out


def _units(w) -> int:
    d = Decimal(w)
    if not d.is_finite() or d < 0:
        raise ValidationError(f"a weight must be a number >= 0, not {w!r}")
    return int(d.scaleb(SCALE).to_integral_value())

"""The largest-remainder split always adds up exactly, never moves a part by more than a fen from its
exact share, and does not depend on the order the weights come in."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationError
from core.monthend.split import split

weights = st.dictionaries(st.integers(1, 10_000), st.decimals(min_value=0, max_value=100_000, places=2,
                                                              allow_nan=False, allow_infinity=False),
                          min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(0, 10**9), w=weights)
def test_the_parts_add_up_exactly_and_stay_within_a_fen(total, w):
    if sum(w.values()) == 0:
        if total:
            with pytest.raises(ValidationError):
                split(total, w.items())
        return
    parts = split(total, w.items())
    assert sum(parts.values()) == total
    whole = sum(w.values())
    for a, fen in parts.items():
        exact = Decimal(total) * w[a] / whole
        assert fen >= 0 and abs(Decimal(fen) - exact) < 1
        if w[a] == 0:
            assert fen == 0
    assert split(total, reversed(list(w.items()))) == parts


def test_ties_go_to_the_lower_account_id():
    assert split(5, [(9, Decimal(1)), (3, Decimal(1)), (7, Decimal(1))]) == {3: 2, 7: 2, 9: 1}
    assert split(1, [(2, Decimal("0.5")), (1, Decimal("0.5"))]) == {1: 1, 2: 0}


def test_one_account_twice_is_refused():
    with pytest.raises(ValidationError):
        split(10, [(1, Decimal(1)), (1, Decimal(2))])

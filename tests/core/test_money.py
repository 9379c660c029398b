from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationError
from core.ledger.money import format_fen, parse_yuan, to_fen


@pytest.mark.parametrize("text,fen", [("50", 5000), ("50.5", 5050), ("50.00", 5000), ("0.01", 1), (" 12.34 ", 1234)])
def test_parse_yuan_reads_what_people_type(text, fen):
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["-1", "0", "0.00", "1.234", "abc", "", "NaN", "Infinity", "1e400x", "1e400", "-1e400", "1e-400"])
def test_parse_yuan_refuses_bad_amounts(text):
    with pytest.raises(ValidationError):
        parse_yuan(text)


def test_parse_yuan_refuses_floats():
    with pytest.raises(ValidationError):
        parse_yuan(0.1)


def test_to_fen_rounds_once_half_up():
    assert to_fen(Decimal("117.192")) == 11719
    assert to_fen(Decimal("117.195")) == 11720
    assert to_fen(Decimal("0.005")) == 1
    with pytest.raises(TypeError):
        to_fen(1.5)


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_format_and_parse_round_trip(fen):
    text = format_fen(fen)
    assert parse_yuan(text, allow_zero=True, allow_negative=True) == fen

"""A readings file whose first line is a wrong header is refused whole, naming the header."""
import pytest

from core.billing.csv_import import import_text
from core.errors import ValidationError


def test_a_wrong_header_is_refused_not_read_as_a_reading():
    with pytest.raises(ValidationError, match="header"):
        import_text("serial,time,kwh\nE1,2026-07-01T00:00:00+08:00,10\n")


def test_a_header_with_a_misspelt_column_names_it():
    with pytest.raises(ValidationError, match="header.*totl"):
        import_text("meter_serial,taken_at,totl\nE1,2026-07-01T00:00:00+08:00,10\n")

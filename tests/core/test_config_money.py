"""Yuan amounts in the environment go through core.ledger.money like every other amount (issue 17, item 7):
two decimal places at most, no rounding, no negative; the variable is named in the error."""
from __future__ import annotations

import pytest

from core import config


@pytest.fixture(autouse=True)
def _fresh_settings():
    config.reset_settings()
    yield
    config.reset_settings()


def test_max_amount_is_parsed_by_core_money(monkeypatch):
    monkeypatch.setenv("METERPAY_MAX_AMOUNT", "100.50")
    assert config.get_settings().max_amount_fen == 10050
    for bad, reason in (("100.005", "more than two decimal places"), ("-5", "negative"), ("1e3x", "not an amount"),
                        ("0", "at least 0.01 yuan"), ("NaN", "not an amount")):
        monkeypatch.setenv("METERPAY_MAX_AMOUNT", bad)
        config.reset_settings()
        with pytest.raises(config.ConfigError, match=f"METERPAY_MAX_AMOUNT: .*{reason}"):
            config.get_settings()


def test_a_recharge_above_the_max_amount_is_refused_with_the_exact_limit(monkeypatch):
    from core.errors import ValidationError
    from core.ledger.guards import check_amount
    monkeypatch.setenv("METERPAY_MAX_AMOUNT", "100.50")
    check_amount(10050)
    with pytest.raises(ValidationError, match="METERPAY_MAX_AMOUNT"):
        check_amount(10051)


@pytest.mark.parametrize("name", ["METERPAY_EMERGENCY_CREDIT", "METERPAY_RESTORE_ABOVE"])
def test_supply_amounts_are_parsed_by_core_money(monkeypatch, name):
    monkeypatch.setenv(name, "2.50")
    assert config.get(name) == 250
    monkeypatch.setenv(name, "0")
    assert config.get(name) == 0
    for bad in ("0.125", "-1", "abc"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(config.ConfigError, match=name):
            config.get(name)


def test_no_code_parses_yuan_by_hand_outside_core_money():
    """Text or Decimal becomes fen only in core/ledger/money.py: no `Decimal(...) * 100` or `int(... * 100)`
    in the code that handles payments and settings (the areas of this package)."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"(Decimal\([^)]*\)\s*\*\s*100\b|\*\s*100\)?\s*\)|/\s*100\b)")
    offenders = []
    for area in ("core/config.py", "core/payments", "miniapp_api", "meterpay/cli/pay.py"):
        path = root / area
        for f in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert offenders == []

"""Supply amounts from the environment are yuan parsed by core.ledger.money (no sub-fen digits, no
rounding of their own)."""
from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.supply import auto


def test_supply_amounts_from_the_environment_go_through_core_money(factory, settings_env):
    site = factory.site()
    settings_env(METERPAY_EMERGENCY_CREDIT="0.125")
    with pytest.raises(ValidationError) as refused:
        auto.policy_for(site)
    assert "METERPAY_EMERGENCY_CREDIT" in str(refused.value)
    settings_env(METERPAY_EMERGENCY_CREDIT="2.50", METERPAY_RESTORE_ABOVE="1.005")
    with pytest.raises(ValidationError, match="METERPAY_RESTORE_ABOVE"):
        auto.policy_for(site)
    settings_env(METERPAY_RESTORE_ABOVE="3")
    policy = auto.policy_for(site)
    assert (policy.cut_at_fen, policy.restore_above_fen) == (-250, 300)

"""Billing fixtures: accounts on a stored plan, and readings written the way meters give them."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from core.sites.accounts import MeterSpec
from core.tariffs.store import add_plan

SHANGHAI = ZoneInfo("Asia/Shanghai")
FLAT = {"kind": "flat", "unit": "kWh", "price": "0.6"}
BEIJING_TIERS = {"kind": "tiered", "unit": "kWh", "cycle": "month",
                 "tiers": [{"upto": "240", "price": "0.4883"}, {"upto": "400", "price": "0.5383"},
                           {"upto": None, "price": "0.7883"}]}


def at(text: str) -> datetime:
    """'2026-07-01 08:00' in Shanghai time."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def kwh(text) -> Decimal:
    return Decimal(str(text))


@pytest.fixture
def billed_account(factory, session):
    """``billed_account(plan=FLAT, mode="prepaid-platform", balance_fen=100000, ct_ratio=1)`` -> (account, meter)."""
    counter = {"n": 0}

    def make(plan: dict | None = FLAT, *, mode: str = "prepaid-platform", balance_fen: int = 100_000,
             ct_ratio: int = 1, plan_name: str | None = None, kind: str = "electricity"):
        counter["n"] += 1
        site = factory.site()
        name = None
        if plan is not None:
            name = plan_name or f"plan-{counter['n']}"
            add_plan(session, name, plan, site_id=site.id)
        serial = f"BILL{counter['n']:04d}-{id(session) % 10000}"
        acct = factory.account(site=site, balance_fen=balance_fen, billing_mode=mode, tariff=name,
                               meters=(MeterSpec(serial=serial, ct_ratio=ct_ratio, kind=kind),))
        return acct, acct.meters[0]
    return make

"""Batch tests: rooms whose meters hang behind simulated gateways over real TCP."""
from __future__ import annotations

import pytest

from tests.hardware.conftest import _fast_meters, simulator  # noqa: F401  (fixtures)


@pytest.fixture
def wired_site(factory, simulator, session):  # noqa: F811
    """``rooms = wired_site(n, profile=..., per_gateway=...)``: a site with n rooms in building A
    (floors 1.., 10 rooms a floor), each with an open account and one meter behind a simulated
    gateway. Returns (site, [(room, account, meter row, sim meter)], gateways)."""
    from core.models import Meter
    from core.sites.accounts import MeterSpec

    def make(n: int = 3, *, profile: str = "dlt645-2007", protocol: str = "dlt645", per_gateway: int = 10,
             billing_mode: str = "prepaid-platform", balance_fen: int = 10000, tariff=None, site=None,
             floors_of: int = 10, building: str = "A"):
        site = site or factory.site()
        gws, out = [], []
        for g in range(0, n, per_gateway):
            count = min(per_gateway, n - g)
            addrs = [str(k + 1).zfill(12 if protocol == "dlt645" else 0) for k in range(count)]
            gws.append((simulator(protocol, [(profile, a) for a in addrs]), addrs))
        i = 0
        for gw, addrs in gws:
            for a in addrs:
                prefix = "" if building == "A" else building
                room = factory.room(site, number=f"{prefix}{i // floors_of + 1}{i % floors_of + 1:02d}", building=building,
                                    floor=str(i // floors_of + 1))
                acct = factory.account(room=room, billing_mode=billing_mode, balance_fen=balance_fen, tariff=tariff,
                                       meters=(MeterSpec(serial=f"S{site.id}-{building}-{i}", kind="electricity", profile=profile,
                                                         gateway=gw.url, address=a),))
                meter = session.query(Meter).filter_by(account_id=acct.id).one()
                out.append((room, acct, meter, gw.meter(a)))
                i += 1
        session.commit()
        return site, out, [g for g, _a in gws]
    return make

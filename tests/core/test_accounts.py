"""Opening accounts: several meters in one call, presets, conflicts that write nothing."""
import pytest
from sqlalchemy import func, select

from core import ledger
from core.errors import Conflict, NotFound, ValidationError
from core.models import Account, Meter
from core.sites.accounts import MeterSpec, OpenAccountRequest, open_account, save_preset
from core.tariffs.store import add_plan


def test_one_account_owns_several_meters_and_an_opening_balance(session, factory):
    room = factory.room()
    add_plan(session, "flat", {"kind": "flat", "unit": "kWh", "price": "0.6"})
    acct = open_account(session, OpenAccountRequest(
        room_id=room.id, tenant_name="Li", tenant_phone="13900001111", tariff="flat",
        meters=(MeterSpec("E1", gateway="tcp://127.0.0.1:9000", address="1"),
                MeterSpec("W1", kind="water", profile="cjt188-water", gateway="tcp://127.0.0.1:9001",
                          address="00000000000001")),
        opening_balance_fen=12345))
    session.commit()
    assert [m.serial for m in acct.meters] == ["E1", "W1"]
    assert acct.meters[1].gateway.protocol == "cjt188"
    assert ledger.account_balance(session, acct.id) == 12345


def test_a_preset_fills_in_tariff_mode_levels_and_balance(session, factory):
    room = factory.room()
    add_plan(session, "shop", {"kind": "flat", "unit": "kWh", "price": "1.2"})
    save_preset(session, "small shop", tariff="shop", billing_mode="prepaid-platform",
                alarm_levels=[{"amount_fen": 3000, "times": 1, "every_minutes": 0}], opening_balance_fen=5000)
    acct = open_account(session, OpenAccountRequest(room_id=room.id, tenant_name="Wang", preset="small shop",
                                                    meters=(MeterSpec("E9"),)))
    session.commit()
    assert acct.electricity_plan.name == "shop"
    assert acct.alarm_levels[0]["amount_fen"] == 3000
    assert ledger.account_balance(session, acct.id) == 5000


@pytest.mark.parametrize("req_kwargs,error", [
    ({"tenant_name": ""}, ValidationError),
    ({"meters": ()}, ValidationError),
    ({"billing_mode": "free"}, ValidationError),
    ({"tariff": "no-such-plan"}, NotFound),
    ({"preset": "no-such-preset"}, NotFound),
    ({"opening_balance_fen": -5}, ValidationError),
    ({"meters": (MeterSpec("E2", kind="gas"),)}, ValidationError),
    ({"meters": (MeterSpec("E2", gateway="not a url"),)}, ValidationError),
])
def test_bad_requests_open_nothing(session, factory, req_kwargs, error):
    room = factory.room()
    session.commit()
    base = {"room_id": room.id, "tenant_name": "Zhao", "meters": (MeterSpec("E2"),)}
    with pytest.raises(error):
        open_account(session, OpenAccountRequest(**{**base, **req_kwargs}))
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Account)) == 0
    assert session.scalar(select(func.count()).select_from(Meter)) == 0


def test_a_room_has_one_open_account_and_a_meter_one_owner(session, factory):
    acct = factory.account()
    session.commit()
    with pytest.raises(Conflict, match="already has open account"):
        open_account(session, OpenAccountRequest(room_id=acct.room_id, tenant_name="X", meters=(MeterSpec("N1"),)))
    session.rollback()
    other = factory.room(site=acct.room.floor.building.site)
    with pytest.raises(Conflict, match="already on account"):
        open_account(session, OpenAccountRequest(room_id=other.id, tenant_name="Y",
                                                 meters=(MeterSpec(acct.meters[0].serial),)))


def test_unknown_room_is_not_found(session):
    with pytest.raises(NotFound):
        open_account(session, OpenAccountRequest(room_id=424242, tenant_name="Z", meters=(MeterSpec("E3"),)))


def test_a_preset_of_every_site_names_only_templates(session, factory):
    import pytest

    from core.errors import ValidationError
    site = factory.site()
    add_plan(session, "site-only", {"kind": "flat", "unit": "kWh", "price": "1.2"}, site_id=site.id)
    add_plan(session, "shared", {"kind": "flat", "unit": "kWh", "price": "1.0"})
    with pytest.raises(ValidationError, match="only templates"):
        save_preset(session, "everywhere", tariff="site-only")
    assert save_preset(session, "everywhere", tariff="shared").electricity_plan_id is not None
    assert save_preset(session, "here", tariff="site-only", site_id=site.id).electricity_plan_id is not None

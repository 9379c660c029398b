"""Account opening from the web: one or several meters, presets, saved presets, bad input, and
the spreadsheet import with an error report per line."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.models import Account, AccountPreset, LedgerAccount, Meter
from tests.admin.conftest import room_at


@pytest.fixture
def site(factory, session):
    site = factory.site("东方广场")
    room_at(factory, site, "A101")
    room_at(factory, site, "A102")
    from core.tariffs.store import add_plan
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"})
    add_plan(session, "商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"})
    session.commit()
    return site


def form(**over):
    data = {"room": "A101", "tenant": "王记便利店", "phone": "13800000001", "meter0_serial": "E0001",
            "meter0_kind": "electricity", "meter0_profile": "acrel-ddsy1352", "meter0_address": "3",
            "tariff": "商业电价", "billing_mode": "prepaid-platform", "opening_balance": "200",
            "level1": "50", "level2": "20", "level3": "0"}
    data.update(over)
    return data


def test_the_form_lists_vacant_rooms_tariffs_and_billing_modes(manage, site):
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/sites/{site.id}/accounts/new").text
    assert '<option value="A101">' in html and "商业电价" in html and "平台计费" in html


def test_opening_an_account_with_an_electricity_and_a_water_meter(manage, site, session):
    manage.as_manager("alice", sites=[site])
    resp = manage.post(f"/admin/sites/{site.id}/accounts/new",
                       form(meter1_serial="W0001", meter1_kind="water", meter1_profile="cjt188-water",
                            meter1_address="00000000000001"))
    assert resp.status_code == 303, resp.text
    acct = session.scalar(select(Account))
    assert acct.tenant.name == "王记便利店" and acct.electricity_plan.name == "商业电价"
    assert sorted(m.serial for m in acct.meters) == ["E0001", "W0001"]
    assert session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.account_id == acct.id)) == 20000
    assert [lv["amount_fen"] for lv in acct.alarm_levels] == [5000, 2000, 0]
    assert "已为 A101 开户" in manage.client.get(resp.location).text


@pytest.mark.parametrize("over, field_text", [
    ({"tenant": ""}, "tenant"),
    ({"room": "Z999"}, "Z999"),
    ({"meter0_serial": ""}, "meter"),
    ({"opening_balance": "12.345"}, "opening_balance"),
    ({"level1": "10", "level2": "20"}, "报警金额"),
    ({"tariff": "没有这个"}, "没有这个"),
])
def test_bad_input_is_refused_with_a_clear_error_and_opens_nothing(manage, site, session, over, field_text):
    manage.as_manager("alice", sites=[site])
    resp = manage.post(f"/admin/sites/{site.id}/accounts/new", form(**over))
    assert resp.status_code in (400, 404)
    assert 'class="flash err"' in resp.text and field_text in resp.text
    assert session.scalar(select(func.count()).select_from(Account)) == 0
    assert session.scalar(select(func.count()).select_from(Meter)) == 0
    assert 'value="王记便利店"' in resp.text or over.get("tenant") == ""  # the form keeps what was typed


def test_a_room_with_an_open_account_cannot_be_opened_twice(manage, site, session):
    manage.as_manager("alice", sites=[site])
    manage.post(f"/admin/sites/{site.id}/accounts/new", form())
    resp = manage.post(f"/admin/sites/{site.id}/accounts/new", form(meter0_serial="E0002", tenant="李记"))
    assert resp.status_code == 409
    assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_a_saved_preset_fills_the_next_opening(manage, site, session):
    manage.as_manager("alice", sites=[site])
    manage.post(f"/admin/sites/{site.id}/accounts/new",
                form(save_preset="商铺标准", opening_balance="100", level1="80", level2="30", level3="10"))
    preset = session.scalar(select(AccountPreset))
    assert (preset.name, preset.opening_balance_fen, preset.site_id) == ("商铺标准", 10000, site.id)
    html = manage.client.get(f"/admin/sites/{site.id}/accounts/new").text
    assert 'data-preset="商铺标准"' in html and 'data-opening="100.00"' in html and 'data-tariff="商业电价"' in html
    # One click on the preset sends its name; the form's empty fields come from it.
    resp = manage.post(f"/admin/sites/{site.id}/accounts/new",
                       {"room": "A102", "tenant": "李记", "meter0_serial": "E0009", "preset": "商铺标准"})
    assert resp.status_code == 303
    session.expire_all()
    acct = session.scalar(select(Account).where(Account.tenant.has(name="李记")))
    assert acct.electricity_plan.name == "商业电价"
    assert session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.account_id == acct.id)) == 10000
    assert [lv["amount_fen"] for lv in acct.alarm_levels] == [8000, 3000, 1000]


def test_a_viewer_cannot_open_accounts(manage, site, session):
    manage.as_manager("vera", sites=[site], role="viewer")
    assert manage.post(f"/admin/sites/{site.id}/accounts/new", form()).status_code == 403


CSV = """building,floor,room,area_m2,tenant,phone,meter_serial,meter_kind,profile,gateway,address,tariff,billing_mode,opening_balance
A,1,A101,30,王记,13800000001,E1001,electricity,acrel-ddsy1352,,1,商业电价,prepaid-platform,100
A,1,A103,45,李记,13800000002,E1003,electricity,acrel-ddsy1352,,2,商业电价,prepaid-platform,50.5
A,1,A103,45,李记,13800000002,W1003,water,cjt188-water,,00000000000003,商业水价,prepaid-platform,
B,2,B201,abc,赵记,,E2001,electricity,acrel-ddsy1352,,3,,prepaid-platform,
"""


def test_importing_a_spreadsheet_reports_each_bad_line_and_imports_the_rest(manage, site, session):
    import io
    manage.as_manager("alice", sites=[site])
    resp = manage.client.post(f"/admin/sites/{site.id}/import",
                              data={"csrf_token": manage.csrf(), "file": (io.BytesIO(CSV.encode()), "rooms.csv")},
                              content_type="multipart/form-data")
    assert resp.status_code == 422
    html = resp.text
    assert 'id="import-errors"' in html and "<td>5</td>" in html and "area_m2" in html
    assert session.scalar(select(func.count()).select_from(Account)) == 2
    again = manage.client.post(f"/admin/sites/{site.id}/import",
                               data={"csrf_token": manage.csrf(), "file": (io.BytesIO(CSV.encode()), "rooms.csv")},
                               content_type="multipart/form-data")
    assert session.scalar(select(func.count()).select_from(Account)) == 2
    assert again.status_code == 422  # the same bad line, nothing moved twice


def test_an_import_that_is_not_a_spreadsheet_is_refused(manage, site):
    import io
    manage.as_manager("alice", sites=[site])
    resp = manage.client.post(f"/admin/sites/{site.id}/import",
                              data={"csrf_token": manage.csrf(), "file": (io.BytesIO(b"x"), "rooms.pdf")},
                              content_type="multipart/form-data")
    assert resp.status_code == 400 and ".xlsx" in resp.text
    bad_header = io.BytesIO(b"name,phone\nx,y\n")
    resp = manage.client.post(f"/admin/sites/{site.id}/import",
                              data={"csrf_token": manage.csrf(), "file": (bad_header, "rooms.csv")},
                              content_type="multipart/form-data")
    assert resp.status_code == 400 and "header" in resp.text


def test_the_template_sheet_imports_cleanly(manage, site, session):
    import io
    manage.as_manager("alice", sites=[site])
    template = manage.client.get("/admin/import-template.csv")
    assert template.status_code == 200 and template.mimetype == "text/csv"
    resp = manage.client.post(f"/admin/sites/{site.id}/import",
                              data={"csrf_token": manage.csrf(), "file": (io.BytesIO(template.data), "t.csv")},
                              content_type="multipart/form-data")
    assert resp.status_code == 200, resp.text
    acct = session.scalar(select(Account).where(Account.tenant.has(name="王记便利店")))
    assert sorted(m.serial for m in acct.meters) == ["E0001", "W0001"]

"""Onboarding a site from a spreadsheet: all rooms in, idempotent, bad rows named by line."""

import pytest
from sqlalchemy import func, select

from core import ledger
from core.errors import ValidationError
from core.models import Account, JournalEntry, Meter, Room
from core.sites.importer import import_file
from core.tariffs.store import add_plan

FIXTURE = "tests/fixtures/site_small.csv"
HEADER = "building,floor,room,area_m2,tenant,phone,meter_serial,meter_kind,profile,gateway,address,tariff,billing_mode,opening_balance\n"


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def plans(session):
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"})
    add_plan(session, "商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"})
    session.commit()


def test_a_site_goes_in_from_csv(session, plans):
    report = import_file(session, "Plaza", FIXTURE)
    assert report.errors == []
    assert (report.rows, report.rooms_created, report.accounts_opened, report.meters_added) == (5, 4, 3, 5)
    a101 = session.scalars(select(Account).join(Room).where(Room.number == "A101")).one()
    assert sorted(m.serial for m in a101.meters) == ["EA101", "WA101"]
    assert ledger.account_balance(session, a101.id) == 10000
    assert session.scalars(select(Meter).where(Meter.serial == "EA201")).one().account_id is None


def test_importing_the_same_file_again_changes_nothing(session, plans):
    import_file(session, "Plaza", FIXTURE)
    counts = [count(session, m) for m in (Room, Account, Meter, JournalEntry)]
    again = import_file(session, "Plaza", FIXTURE)
    assert again.errors == [] and again.unchanged_rows == 5
    assert [count(session, m) for m in (Room, Account, Meter, JournalEntry)] == counts


def test_xlsx_imports_like_csv(session, plans, tmp_path):
    import csv

    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    with open(FIXTURE, encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh)):
            ws.append([float(v) if (i and j == 3 and v) else v for j, v in enumerate(row)])
    path = tmp_path / "site.xlsx"
    wb.save(path)
    report = import_file(session, "Plaza", path)
    assert report.errors == [] and report.accounts_opened == 3
    assert session.scalars(select(Room).where(Room.number == "A101")).one().area_m2 == pytest.approx(45.5)


def test_bad_rows_are_reported_by_line_and_leave_no_partial_room(session, plans, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER +
                    "A,1F,A101,45,Wang,13800001111,EA101,electricity,acrel-ddsy1352,tcp://127.0.0.1:1,1,商业电价,prepaid-platform,10\n"
                    "A,1F,A102,45,Li,13900001111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1:1,2,商业电价,prepaid-platform,10\n"
                    "A,1F,A102,45,Li,13900001111,WA102,gas,,tcp://127.0.0.1:1,3,商业电价,prepaid-platform,\n"
                    "A,1F,A103,-4,Zhao,13700001111,EA103,electricity,,tcp://127.0.0.1:1,4,,,\n"
                    "A,1F,A104,20,Qian,13600001111,EA104,electricity,,tcp://127.0.0.1:1,5,,prepaid-platform,-5\n"
                    "A,1F,A105,20,Sun,13500001111,EA105,electricity,,tcp://127.0.0.1:1,6,no-such-tariff,,\n"
                    "A,1F,A106,20,Zhou,13400001111,EA101,electricity,,tcp://127.0.0.1:1,7,,,\n"
                    "A,1F,A107,20,Wu,13300001111,EA107,electricity,,tcp://127.0.0.1:1,8,,,1.234\n",
                    encoding="utf-8")
    report = import_file(session, "Plaza", path)
    by_line = {e.line: e.reason for e in report.errors}
    assert "meter_kind" in by_line[4] and "gas" in by_line[4]
    assert by_line[3].startswith("not imported")            # A102's good row does not go in alone
    assert "area_m2" in by_line[5]
    assert "opening_balance" in by_line[6] and "negative" in by_line[6]
    assert "no-such-tariff" in by_line[7]
    assert "already on account" in by_line[8]
    assert "two decimal places" in by_line[9]
    numbers = set(session.scalars(select(Room.number)))
    assert numbers == {"A101"}
    assert session.scalar(select(func.count()).select_from(Meter)) == 1


def test_a_file_with_a_wrong_header_is_refused_whole(session, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("building,flor,room,meter_serial\nA,1,101,E1\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="missing column.*floor"):
        import_file(session, "Plaza", path)
    path.write_text("building,floor,room,meter_serial,colour\nA,1,101,E1,red\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="unknown column.*colour"):
        import_file(session, "Plaza", path)
    from core.models import Site
    assert session.scalar(select(func.count()).select_from(Site)) == 0


def test_a_missing_file_is_a_clear_error(session):
    with pytest.raises(ValidationError, match="no such file"):
        import_file(session, "Plaza", "/nonexistent/site.csv")


def test_an_opening_balance_repeated_on_each_meter_row_is_posted_once(session, plans, tmp_path):
    path = tmp_path / "repeated.csv"
    path.write_text(HEADER +
                    "A,1F,A101,45,Wang,13800001111,EA101,electricity,acrel-ddsy1352,tcp://127.0.0.1:1,1,商业电价,prepaid-platform,100.00\n"
                    "A,1F,A101,45,Wang,13800001111,WA101,water,cjt188-water,tcp://127.0.0.1:1,00000000000001,商业水价,prepaid-platform,100\n"
                    "A,1F,A102,45,Li,13900001111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1:1,2,商业电价,prepaid-platform,100\n"
                    "A,1F,A102,45,Li,13900001111,WA102,water,cjt188-water,tcp://127.0.0.1:1,00000000000002,商业水价,prepaid-platform,50\n",
                    encoding="utf-8")
    report = import_file(session, "Plaza", path)
    a101 = session.scalars(select(Account).join(Room).where(Room.number == "A101")).one()
    assert ledger.account_balance(session, a101.id) == 10000
    by_line = {e.line: e.reason for e in report.errors}
    assert "opening_balance" in by_line[5] and "100.00" in by_line[5] and "50.00" in by_line[5]
    assert set(session.scalars(select(Room.number))) == {"A101"}


# --- refused up front (issue 14, item 7) ----------------------------------------------------

GOOD_A101 = "A,1F,A101,45,Wang,13800001111,EA101,electricity,acrel-ddsy1352,tcp://127.0.0.1:17100,1,,prepaid-platform,10\n"


def known_profiles():
    from meterpay.cli.sites import known_profiles
    return known_profiles()


@pytest.mark.parametrize("bad_row, reason", [
    ("A,1F,A102,30,Li,13900001111,EA102,electricity,nosuch-profile,tcp://127.0.0.1:17100,2,,,",
     "line 3: profile: unknown 'nosuch-profile'; known: acrel-ddsy1352"),
    ("A,1F,A102,30,Li,1390000111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1:17100,2,,,",
     "line 3: phone: '1390000111' is not a mainland mobile number"),
    ("A,1F,A102,30,Li,12900001111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1:17100,2,,,",
     "line 3: phone:"),
    ("A,1F,A102,30,Li,13900001111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1,2,,,",
     "line 3: gateway: 'tcp://127.0.0.1' must look like tcp://HOST:PORT"),
    ("A,1F,A102,30,Li,13900001111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1:70000,2,,,",
     "line 3: gateway:"),
    ("A,1F,A102,30,Li,13900001111,EA102,electricity,acrel-ddsy1352,http://127.0.0.1:80,2,,,",
     "line 3: gateway:"),
    ("A,1F,A102,30,Li,13900001111,WA102,water,acrel-ddsy1352,tcp://127.0.0.1:17110,00000000000102,,,",
     "line 3: meter_kind: 'water' does not fit profile 'acrel-ddsy1352' (electricity meters)"),
])
def test_a_bad_profile_phone_gateway_or_kind_is_refused_by_line_and_leaves_nothing_of_its_room(
        session, tmp_path, bad_row, reason):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + GOOD_A101 + bad_row + "\n", encoding="utf-8")
    report = import_file(session, "Plaza", path, profiles=known_profiles())
    assert [str(e) for e in report.errors] == [str(report.errors[0])] and str(report.errors[0]).startswith(reason)
    assert set(session.scalars(select(Room.number))) == {"A101"}
    assert set(session.scalars(select(Meter.serial))) == {"EA101"}


def test_a_phone_is_stored_as_eleven_digits_and_a_profile_names_the_kind(session, tmp_path):
    from core.models import Tenant
    path = tmp_path / "ok.csv"
    path.write_text(HEADER +
                    "A,1F,A101,45,Wang,+86 138-0000-1111,EA101,,acrel-ddsy1352,tcp://127.0.0.1:17100,1,,,\n"
                    "A,1F,A101,45,Wang,+86 138-0000-1111,WA101,,cjt188-water,tcp://127.0.0.1:17110,"
                    "00000000000101,,,\n", encoding="utf-8")
    report = import_file(session, "Plaza", path, profiles=known_profiles())
    assert report.errors == []
    assert session.scalars(select(Tenant.phone)).one() == "13800001111"
    assert dict(session.execute(select(Meter.serial, Meter.kind)).all()) == {"EA101": "electricity", "WA101": "water"}


def test_a_text_file_named_xlsx_is_refused_whole(session, tmp_path):
    from core.models import Site
    path = tmp_path / "x.xlsx"
    path.write_text(HEADER + GOOD_A101, encoding="utf-8")
    with pytest.raises(ValidationError, match=r"x.xlsx: not an .xlsx workbook"):
        import_file(session, "Plaza", path)
    assert count(session, Site) == 0


def test_a_csv_that_is_not_utf8_is_refused_whole_even_after_good_lines(session, tmp_path):
    from core.models import Site
    path = tmp_path / "gbk.csv"
    good = [GOOD_A101,
            "A,1F,A102,30,Li,13900001111,EA102,electricity,acrel-ddsy1352,tcp://127.0.0.1:17100,2,,,\n"]
    path.write_bytes((HEADER + "".join(good)).encode() + "A,1F,A103,30,王,,EA103,,,,3,,,\n".encode("gbk"))
    with pytest.raises(ValidationError, match="gbk.csv: not UTF-8 text"):
        import_file(session, "Plaza", path)
    assert count(session, Site) == 0 and count(session, Room) == 0


def test_the_command_line_says_error_for_a_file_it_cannot_read_and_exits_2(session, tmp_path):
    from click.testing import CliRunner

    from meterpay.cli.base import cli
    missing = CliRunner().invoke(cli, ["sites", "import", "--site", "Plaza", str(tmp_path / "missing.csv")])
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: ") and "no such file" in missing.stderr
    assert "Invalid value" not in missing.output
    fake = tmp_path / "x.xlsx"
    fake.write_text("not a workbook\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["sites", "import", "--site", "Plaza", str(fake)])
    assert result.exit_code == 2 and result.stderr == "error: x.xlsx: not an .xlsx workbook\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + GOOD_A101.replace("acrel-ddsy1352", "nosuch-profile"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["sites", "import", "--site", "Plaza", str(bad)])
    assert result.exit_code == 1 and f"{bad}: line 2: profile: unknown 'nosuch-profile'" in result.stderr


def _plans_of(session, serial):
    from core.models import TariffPlan
    meter = session.scalars(select(Meter).where(Meter.serial == serial)).one()
    acct = session.get(Account, meter.account_id) if meter.account_id else None
    name = {p.id: p.name for p in session.scalars(select(TariffPlan))}
    if acct is None:
        return name.get(meter.tariff_plan_id)
    return name.get(acct.electricity_plan_id), name.get(acct.water_plan_id)


def test_rows_of_one_room_may_name_a_tariff_per_meter_kind(session, plans, tmp_path):
    path = tmp_path / "per-kind.csv"
    path.write_text(HEADER +
                    "A,1F,A101,45,Wang,13800001111,EA101,electricity,,,1,商业电价,prepaid-platform,10\n"
                    "A,1F,A101,45,Wang,13800001111,WA101,water,,,00000000000001,商业水价,prepaid-platform,\n"
                    "A,1F,A102,45,Li,13900001111,EA102,electricity,,,2,商业电价,postpaid,\n"
                    "A,1F,A102,45,Li,13900001111,WA102,water,,,00000000000002,,postpaid,\n"
                    "A,1F,A102,45,Li,13900001111,WA103,water,,,00000000000003,商业水价,postpaid,\n",
                    encoding="utf-8")
    report = import_file(session, "Plaza", path)
    assert report.errors == [] and report.accounts_opened == 2
    assert _plans_of(session, "EA101") == ("商业电价", "商业水价")
    assert _plans_of(session, "WA102") == ("商业电价", "商业水价")  # a blank cell takes the room's other rows'
    assert import_file(session, "Plaza", path).unchanged_rows == 5


def test_two_water_rows_of_a_room_naming_different_tariffs_are_refused(session, plans, tmp_path):
    add_plan(session, "居民水价", {"kind": "flat", "unit": "m3", "price": "3.5"})
    session.commit()
    path = tmp_path / "two-water.csv"
    path.write_text(HEADER +
                    "A,1F,A101,45,Wang,13800001111,EA101,electricity,,,1,商业电价,prepaid-platform,\n"
                    "A,1F,A101,45,Wang,13800001111,WA101,water,,,00000000000001,商业水价,prepaid-platform,\n"
                    "A,1F,A101,45,Wang,13800001111,WA102,water,,,00000000000002,居民水价,prepaid-platform,\n"
                    "A,1F,A102,45,Li,13900001111,WA201,water,,,00000000000003,商业电价,prepaid-platform,\n",
                    encoding="utf-8")
    report = import_file(session, "Plaza", path)
    by_line = {e.line: e.reason for e in report.errors}
    assert "different tariffs for its water meters" in by_line[4]
    assert by_line[2].startswith("not imported") and by_line[3].startswith("not imported")
    assert by_line[5] == "tariff: '商业电价' is priced in kWh; a water meter needs m3"
    assert session.scalar(select(func.count()).select_from(Account)) == 0


def test_a_rows_tenant_and_phone_must_still_agree(session, plans, tmp_path):
    path = tmp_path / "phones.csv"
    path.write_text(HEADER +
                    "A,1F,A101,45,Wang,13800001111,EA101,electricity,,,1,商业电价,prepaid-platform,\n"
                    "A,1F,A101,45,Wang,13900001111,WA101,water,,,00000000000001,商业水价,prepaid-platform,\n",
                    encoding="utf-8")
    report = import_file(session, "Plaza", path)
    assert {e.line: e.reason for e in report.errors}[3] == \
        "rows of one room must name the same tenant, phone and billing_mode"


def test_a_tenantless_rows_tariff_is_its_meters_own_plan(session, plans, tmp_path):
    path = tmp_path / "common.csv"
    path.write_text(HEADER +
                    "A,B1,公区,,,,EM01,electricity,,,1,商业电价,,\n"
                    "A,B1,公区,,,,WM01,water,,,00000000000009,商业水价,,\n"
                    "A,B1,水泵房,,,,WM02,water,,,00000000000010,商业电价,,\n",
                    encoding="utf-8")
    report = import_file(session, "Plaza", path)
    assert _plans_of(session, "EM01") == "商业电价" and _plans_of(session, "WM01") == "商业水价"
    assert [(e.line, e.reason) for e in report.errors] == [
        (4, "tariff: '商业电价' is priced in kWh; a water meter needs m3")]
    assert session.scalar(select(func.count()).select_from(Meter)) == 2

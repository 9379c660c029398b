"""The foundation's commands, run as a user runs them."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner
from sqlalchemy import update

from core.models import LedgerAccount
from meterpay.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_ledger_check_passes_on_sound_books_and_names_offenders(session, factory):
    acct = factory.account(balance_fen=1000)
    ok = run("ledger", "check")
    assert ok.exit_code == 0 and "ok" in ok.output
    session.execute(update(LedgerAccount).where(LedgerAccount.account_id == acct.id).values(balance_fen=999))
    session.commit()
    bad = run("ledger", "check")
    assert bad.exit_code == 1
    assert f"wallet:{acct.id}" in bad.output and "999" in bad.output
    as_json = json.loads(run("ledger", "check", "--json").output)
    assert as_json["ok"] is False and as_json["problems"][0]["subject"] == f"wallet:{acct.id}"


def test_tariff_add_stores_a_flat_plan_and_refuses_a_bad_one(tmp_path, session):
    good = tmp_path / "flat.json"
    good.write_text('{"kind":"flat","unit":"kWh","price":"0.6"}')
    r = run("tariff", "add", "居民", "--plan", str(good))
    assert r.exit_code == 0, r.output
    assert run("tariff", "add", "居民", "--plan", str(good)).output.strip().endswith("unchanged")
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind":"flat","unit":"kWh","price":"-1"}')
    r = CliRunner(mix_stderr=False).invoke(cli, ["tariff", "add", "x", "--plan", str(bad)]) if "mix_stderr" in \
        CliRunner.__init__.__code__.co_varnames else CliRunner().invoke(cli, ["tariff", "add", "x", "--plan", str(bad)])
    assert r.exit_code != 0 and "price" in r.output + (r.stderr if hasattr(r, "stderr") else "")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    r = CliRunner().invoke(cli, ["tariff", "add", "x", "--plan", str(garbage)])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_sites_import_reports_rows_and_exits_nonzero_on_rejects(tmp_path, session):
    plan = tmp_path / "p.json"
    plan.write_text('{"kind":"flat","unit":"kWh","price":"1.0"}')
    run("tariff", "add", "商业电价", "--plan", str(plan))
    water = tmp_path / "w.json"
    water.write_text('{"kind":"flat","unit":"m3","price":"5.0"}')
    run("tariff", "add", "商业水价", "--plan", str(water))
    r = run("sites", "import", "--site", "Plaza", "tests/fixtures/site_small.csv", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accounts_opened"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("building,floor,room,meter_serial,meter_kind\nA,1,X1,S1,gas\n")
    r = CliRunner().invoke(cli, ["sites", "import", "--site", "Plaza", str(bad)])
    assert r.exit_code == 1 and "line 2" in r.output and "meter_kind" in r.output


def test_demo_seed_builds_the_demo_once(session):
    from core.config import reset_settings
    from meterpay.cli.serve import SANDBOX_ENV
    before = {name: os.environ.get(name) for name in SANDBOX_ENV}
    try:
        r = run("demo", "seed")
        assert r.exit_code == 0 and "100 rooms" in r.output and "admin" in r.output
        assert run("demo", "seed", "--if-empty").exit_code == 0
        assert CliRunner().invoke(cli, ["demo", "seed"]).exit_code != 0
        assert run("ledger", "check").exit_code == 0
    finally:  # the seed points its process at the sandbox (METERPAY_SANDBOX=1 ...): not the later tests
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings()


def test_the_console_script_runs_db_upgrade_on_a_fresh_sqlite_file(tmp_path):
    env = {**os.environ, "METERPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'fresh.db'}"}
    out = subprocess.run([sys.executable, "-m", "meterpay.cli", "db", "upgrade"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "meterpay.cli", "ledger", "check"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "0 entries" in out.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    r = CliRunner().invoke(cli, ["sites", "import", "--site", "S", str(tmp_path / "missing.csv")])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_ledger_check_names_usage_priced_under_a_plan_of_the_wrong_unit(session, factory):
    from datetime import UTC, datetime

    from core.models import BilledUsage, Reading
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    site = factory.site()
    power, _ = add_plan(session, "电", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site.id)
    acct = factory.account(site=site, meters=(MeterSpec("W1", kind="water", profile="cjt188-water"),))
    assert run("ledger", "check").exit_code == 0
    t0, t1 = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 2, tzinfo=UTC)
    readings = [Reading(meter_id=acct.meters[0].id, taken_at=t, total=v) for t, v in ((t0, 1), (t1, 3))]
    session.add_all(readings)
    session.flush()
    # as billing before 0004 did: water priced per "kWh"
    session.add(BilledUsage(meter_id=acct.meters[0].id, account_id=acct.id, billing_mode="prepaid-platform",
                            from_reading_id=readings[0].id, to_reading_id=readings[1].id, started_at=t0, ended_at=t1,
                            quantity=2, amount=2, amount_fen=0, lines=[], plan_id=power.id))
    acct.water_plan_id = power.id  # and an account holding a kWh plan for water, set by hand
    session.commit()
    bad = run("ledger", "check")
    assert bad.exit_code == 1
    assert "plan-unit: billed_usage" in bad.output and "water meter W1 was priced with '电' in kWh" in bad.output
    assert f"plan-unit: account {acct.id}: its water plan '电' is priced in kWh" in bad.output


def test_sites_check_lists_unpriced_meters_and_exits_nonzero(session, factory):
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    site = factory.site("广场")
    add_plan(session, "电", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site.id)
    factory.account(site=site, tariff="电", meters=(MeterSpec("E1"), MeterSpec("W1", kind="water")))
    r = run("sites", "check")
    assert r.exit_code == 1 and "W1 (water): no water plan" in r.output and "E1" not in r.output
    unknown = CliRunner().invoke(cli, ["sites", "check", "--site", "别处"])
    assert unknown.exit_code not in (0, 1) and "no site named" in unknown.output
    as_json = json.loads(run("sites", "check", "--json").output)
    assert as_json["ok"] is False and [m["serial"] for m in as_json["unpriced"]] == ["W1"]


def test_tariff_add_per_site_as_a_manager_and_copy_a_template(tmp_path, session, factory):
    from core.sites.managers import create_manager
    own, _other = factory.site("东区"), factory.site("西区")
    create_manager(session, "alice", "password1", sites=[own.name], role="admin")
    session.commit()
    plan = tmp_path / "flat.json"
    plan.write_text('{"kind":"flat","unit":"kWh","price":"0.6"}')
    assert "template" in run("tariff", "add", "居民", "--plan", str(plan)).output
    r = run("tariff", "add", "商业", "--plan", str(plan), "--site", "东区", "--as", "alice")
    assert r.exit_code == 0 and "site 东区" in r.output
    denied = CliRunner().invoke(cli, ["tariff", "add", "商业", "--plan", str(plan), "--site", "西区", "--as", "alice"])
    assert denied.exit_code == 1 and "not allowed" in denied.output
    denied = CliRunner().invoke(cli, ["tariff", "add", "居民", "--plan", str(plan), "--as", "alice"])
    assert denied.exit_code == 1 and "not allowed" in denied.output
    assert run("tariff", "copy", "居民", "--site", "东区", "--as", "alice").exit_code == 0
    listed = run("tariff", "list", "--site", "东区").output.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [["居民", "template"], ["商业", "东区"], ["居民", "东区"]]
    assert "西区" not in run("tariff", "list").output

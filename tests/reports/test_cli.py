"""``meterpay report ...`` as a user runs it: the JSON contracts of issue 15, the .xlsx files, and one
``error: ...`` line with a non-zero exit for bad input (never click's own ``Error: Invalid value``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from meterpay.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return CliRunner().invoke(cli, ["report", *args])


def ok_json(*args):
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_income_json_has_the_contract_keys_as_yuan_strings(plaza):
    out = ok_json("income", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--by", "month")
    assert set(out) == {"rows", "total"}
    (row,) = out["rows"]
    assert set(row) == {"period", "income", "cash_in", "refunds"}
    assert list(row["income"]) == ["electricity", "water", "property", "apportion", "other", "total"]
    assert list(row["cash_in"]) == ["wechat", "alipay", "cash", "transfer", "total"]
    assert row["income"]["total"] == "43.43" and row["cash_in"]["wechat"] == "200.00" and row["refunds"] == "0.00"
    assert set(out["total"]) == {"income", "cash_in", "refunds"}
    days = ok_json("income", "--site", "Plaza", "--from", "2026-04-29", "--to", "2026-05-01")["rows"]
    assert [d["period"] for d in days] == ["2026-04-29", "2026-04-30", "2026-05-01"]
    years = ok_json("income", "--site", "Plaza", "--from", "2025-12-31", "--to", "2026-01-01", "--by", "year")
    assert [r["period"] for r in years["rows"]] == ["2025", "2026"]


def test_energy_json_rows_and_quantities(plaza):
    out = ok_json("energy", "--site", "Plaza", "--period", "2026-04")
    row = next(r for r in out["rows"] if r["room"] == "102")
    assert {"room", "tenant", "total", "sharp", "peak", "flat", "valley", "fee", "fee_by_period"} <= set(row)
    assert (row["total"], row["peak"], row["fee"]) == ("12.00", "1.00", "6.20")
    water = ok_json("energy", "--site", "Plaza", "--period", "2026-04", "--utility", "water")
    assert water["rows"][0]["total"] == "0.125"


def test_yoy_json_uses_null_not_zero(plaza):
    out = ok_json("yoy", "--site", "Plaza", "--year", "2026", "--by", "building")
    row = next(r for r in out["rows"] if (r["key"], r["month"]) == ("A", "2026-04"))
    assert set(row) == {"key", "month", "usage", "usage_last_year", "change_pct"}
    assert row["usage"] == "23.00" and row["usage_last_year"] is None and row["change_pct"] is None
    r = run("yoy", "--site", "Plaza", "--year", "2026", "--json")
    assert '"usage_last_year": null' in r.stdout and '"change_pct": null' in r.stdout


def test_meter_json_flags(plaza):
    out = ok_json("meter", "--meter", "E102", "--by", "day", "--period", "2026-04")
    assert out["meter"] == "E102" and out["unit"] == "kWh"
    assert out["rows"][0] == {"period": "2026-04-01", "usage": None, "flag": "gap"}
    assert out["rows"][1] == {"period": "2026-04-02", "usage": "12.00", "flag": None}
    months = ok_json("meter", "--meter", "E102", "--by", "month", "--period", "2026")["rows"]
    assert len(months) == 12 and months[3]["period"] == "2026-04"
    (year,) = ok_json("meter", "--meter", "E102", "--by", "year", "--period", "2026")["rows"]
    assert year["period"] == "2026" and year["usage"] == "12.00"


def test_orders_json(plaza):
    out = ok_json("orders", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--channel", "wechat")
    assert set(out) >= {"rows", "total"}
    (row,) = out["rows"]
    assert set(row) == {"time", "room", "tenant", "kind", "channel", "amount", "state", "entry_id",
                        "provider_txn_id"}
    assert (row["kind"], row["amount"], row["state"]) == ("recharge", "200.00", "paid") and out["total"] == "200.00"
    charges = ok_json("orders", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--kind", "charge")
    assert [r["amount"] for r in charges["rows"]] == ["-30.00"]


@pytest.mark.parametrize("args, says", [
    (("income", "--site", "Nowhere", "--from", "2026-04-01", "--to", "2026-04-30"), "no site"),
    (("income", "--site", "Plaza", "--from", "2026-04-30", "--to", "2026-04-01"), "after"),
    (("income", "--site", "Plaza", "--from", "2026/04/01", "--to", "2026-04-30"), "from"),
    (("income", "--site", "Plaza", "--from", "2026-02-30", "--to", "2026-04-30"), "from"),
    (("income", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--by", "week"), "by"),
    (("income", "--site", "Plaza", "--to", "2026-04-30"), "--from"),
    (("energy", "--site", "Plaza", "--period", "2026-13"), "period"),
    (("energy", "--site", "Plaza", "--period", "2026-4"), "period"),
    (("energy", "--site", "Plaza", "--period", "2026-04", "--utility", "gas"), "utility"),
    (("energy", "--site", "Nowhere", "--period", "2026-04"), "no site"),
    (("yoy", "--site", "Plaza", "--year", "26"), "year"),
    (("yoy", "--site", "Plaza", "--year", "2026", "--by", "floor"), "by"),
    (("meter", "--meter", "NOPE", "--by", "day", "--period", "2026-04"), "no meter"),
    (("meter", "--meter", "E102", "--by", "day", "--period", "2026"), "period"),
    (("meter", "--meter", "E102", "--by", "month", "--period", "2026-04"), "period"),
    (("meter", "--meter", "E102", "--by", "hour", "--period", "2026-04"), "by"),
    (("orders", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--kind", "gift"), "kind"),
    (("orders", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--channel", "card"), "channel"),
    (("orders", "--site", "Plaza", "--from", "2026-05-01", "--to", "2026-04-30"), "after"),
])
def test_bad_input_is_one_error_line_and_a_nonzero_exit(plaza, args, says):
    r = run(*args, "--json")
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.stderr
    assert "Invalid value" not in r.stderr and "Traceback" not in r.output and r.stdout == ""


def test_the_console_script_prints_the_error_line(plaza, database_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "METERPAY_DATABASE_URL": database_url}
    out = subprocess.run([sys.executable, "-m", "meterpay.cli", "report", "meter", "--meter", "E102", "--by", "day",
                          "--period", "April"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and out.stderr.strip().startswith("error: period") and "\n" not in out.stderr.strip()


def test_exports_are_xlsx_with_chinese_headers_formats_and_a_totals_row(plaza, tmp_path):
    energy = tmp_path / "energy.xlsx"
    r = run("energy", "--site", "Plaza", "--period", "2026-04", "--xlsx", str(energy))
    assert r.exit_code == 0, r.output
    ws = load_workbook(energy).active
    headers = [c.value for c in ws[2]]
    assert headers[:6] == ["楼栋", "楼层", "房间", "租户", "总量(kWh)", "尖(kWh)"] and "费用(元)" in headers
    last = [c.value for c in ws[ws.max_row]]
    assert last[0] == "合计" and float(last[4]) == 73.0 and float(last[headers.index("费用(元)")]) == 62.8
    assert ws.cell(row=3, column=5).number_format == "0.00"
    assert ws.cell(row=3, column=headers.index("费用(元)") + 1).number_format == "#,##0.00"
    for args, name in [
        (("income", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--by", "month"), "收入合计"),
        (("yoy", "--site", "Plaza", "--year", "2026"), "去年同期(kWh)"),
        (("meter", "--meter", "E102", "--by", "day", "--period", "2026-04"), "用量(kWh)"),
        (("orders", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30"), "金额(元)"),
    ]:
        path = tmp_path / f"{args[0]}.xlsx"
        r = run(*args, "--xlsx", str(path))
        assert r.exit_code == 0, r.output
        ws = load_workbook(path).active
        assert name in [c.value for c in ws[2]]
        assert ws.cell(row=ws.max_row, column=1).value == "合计"
    ws = load_workbook(tmp_path / "income.xlsx").active
    headers = [c.value for c in ws[2]]
    assert float(ws.cell(row=ws.max_row, column=headers.index("收入合计") + 1).value) == 43.43
    assert run("income", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--json", "--xlsx",
               str(tmp_path / "x.xlsx")).exit_code != 0


def test_tables_print_without_flags(plaza):
    r = run("energy", "--site", "Plaza", "--period", "2026-04")
    assert r.exit_code == 0 and "102" in r.stdout and "6.20" in r.stdout
    r = run("orders", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30")
    assert r.exit_code == 0 and "2 rows, total 170.00" in r.stdout


def test_rebuild_recomputes_the_rollups_and_ledger_check_passes(plaza):
    from sqlalchemy import delete

    from core.db import session_scope
    from core.models.report import LedgerDay, UsageMonth
    with session_scope() as s:  # as a database from before the rollups: empty tables
        s.execute(delete(LedgerDay))
        s.execute(delete(UsageMonth))
    bad = CliRunner().invoke(cli, ["ledger", "check"])
    assert bad.exit_code == 1 and "rollup-ledger" in bad.output and "report rebuild" in bad.output
    r = CliRunner().invoke(cli, ["report", "rebuild", "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.stdout)
    assert counts["usage_months"] == 5 and counts["reading_days"] > 0 and counts["ledger_days"] > 0
    assert CliRunner().invoke(cli, ["ledger", "check"]).exit_code == 0
    assert ok_json("income", "--site", "Plaza", "--from", "2026-04-01", "--to", "2026-04-30", "--by", "month")[
        "rows"][0]["income"]["total"] == "43.43"

"""The bills CLI contract: list (with --state and --json), confirm, export (.xlsx, Chinese headers)."""
from __future__ import annotations

import json

from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import select

from core.bills import generate
from core.models import Bill
from meterpay.cli import cli
from tests.bills.conftest import item


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_list_confirm_and_list_by_state(session, shop):
    item(session, shop)
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    session.commit()
    res = run("bills", "list", "--site", "Mall", "--period", "2026-04", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["count"] == 1 and data["total"] == "205.95"
    b = data["bills"][0]
    assert (b["room"], b["state"], b["total"], b["open"], b["overdue"]) == ("101", "draft", "205.95", "0.00", False)
    assert [ln["amount"] for ln in b["lines"]] == ["40.80", "21.00", "5.70", "15.00", "123.45"]
    assert json.loads(run("bills", "list", "--site", "Mall", "--period", "2026-04", "--state", "confirmed",
                          "--json").output)["count"] == 0

    res = run("bills", "confirm", "--site", "Mall", "--period", "2026-04")
    assert res.exit_code == 0 and "confirmed 1 bill" in res.output
    again = run("bills", "confirm", "--site", "Mall", "--period", "2026-04")
    assert again.exit_code == 0 and "confirmed 0 bill" in again.output
    for state, n in (("draft", 0), ("confirmed", 1), ("paid", 0), ("overdue", 0)):
        out = json.loads(run("bills", "list", "--site", "Mall", "--period", "2026-04", "--state", state, "--json").output)
        assert out["count"] == n, state
    confirmed = json.loads(run("bills", "list", "--site", "Mall", "--period", "2026-04", "--json").output)["bills"][0]
    assert (confirmed["state"], confirmed["open"]) == ("confirmed", "205.95")
    plain = run("bills", "list", "--site", "Mall", "--period", "2026-04")
    assert plain.exit_code == 0 and confirmed["bill_no"] in plain.output
    assert run("ledger", "check").exit_code == 0


def test_bad_input_is_one_line_and_exit_2(session, shop):
    for args in (("bills", "list", "--site", "Nope", "--period", "2026-04"),
                 ("bills", "list", "--site", "Mall", "--period", "2026-4"),
                 ("bills", "list", "--site", "Mall", "--period", "2026-04", "--state", "late"),
                 ("bills", "confirm", "--site", "Mall"),
                 ("bills", "export", "--site", "Mall", "--period", "2026-04")):
        res = run(*args)
        assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.splitlines()) == 1, args


def test_export_bills_and_arrears_with_chinese_headers(session, shop, tmp_path):
    item(session, shop)
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    session.commit()
    path = tmp_path / "bills.xlsx"
    res = run("bills", "export", "--site", "Mall", "--period", "2026-04", "--out", str(path))
    assert res.exit_code == 0, res.output
    wb = load_workbook(path)
    ws = wb["账单"]
    headers = [c.value for c in ws[1]]
    assert headers[:4] == ["账单号", "楼栋", "楼层", "房间"] and "应收金额（元）" in headers and "未付金额（元）" in headers
    row = [c.value for c in ws[2]]
    assert row[0] == session.scalar(select(Bill.bill_no)) and row[3] == "101" and row[9] == "草稿"
    assert float(row[headers.index("应收金额（元）")]) == 205.95
    lines = wb["账单明细"]
    assert [c.value for c in lines[1]][:5] == ["账单号", "房间", "序号", "类型", "项目"]
    assert lines.max_row == 1 + 5

    arrears = tmp_path / "arrears.xlsx"
    assert run("bills", "export", "--site", "Mall", "--period", "2026-04", "--out", str(arrears), "--arrears").exit_code == 0
    ws = load_workbook(arrears)["欠费清单"]
    assert "欠费金额（元）" in [c.value for c in ws[1]] and ws.max_row == 2  # headers and the 合计 row: a draft is not owed
    run("bills", "confirm", "--site", "Mall", "--period", "2026-04")
    run("bills", "export", "--site", "Mall", "--period", "2026-04", "--out", str(arrears), "--arrears")
    ws = load_workbook(arrears)["欠费清单"]
    headers = [c.value for c in ws[1]]
    assert ws.max_row == 3 and float(ws.cell(row=2, column=headers.index("欠费金额（元）") + 1).value) == 205.95


def test_pdf_writes_one_bill_and_an_unknown_bill_is_an_error(session, shop, tmp_path):
    item(session, shop)
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    session.commit()
    bill_no = session.scalar(select(Bill.bill_no))
    out = tmp_path / "bill.pdf"
    res = run("bills", "pdf", bill_no, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"%PDF") and len(out.read_bytes()) > 1000
    missing = run("bills", "pdf", "B9-209901-00001", "--out", str(tmp_path / "x.pdf"))
    assert missing.exit_code not in (0, 1) and not (tmp_path / "x.pdf").exists()

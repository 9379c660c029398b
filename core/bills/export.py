"""Bills and the arrears list as .xlsx (openpyxl), Chinese headers in the first row.

- bills (``bills_xlsx``): sheet 账单 (one row per bill) and sheet 账单明细 (one row per line);
- arrears (``arrears_xlsx``): sheet 欠费清单, the owed bills (confirmed or partly paid) with what is
  still open, the due date and the days overdue, largest first per building and room.

Money is yuan as exact numbers (fen / 100) with the format ``#,##0.00``; a totals row (合计) ends
each list.
"""
from __future__ import annotations

from decimal import Decimal
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from core.bills.service import KIND_NAMES, STATE_NAMES, BillRow

MONEY = "#,##0.00"
BILL_HEADERS = ["账单号", "楼栋", "楼层", "房间", "租户", "电话", "账期", "账期开始", "账期结束", "状态",
                "应收金额（元）", "已付金额（元）", "冲减金额（元）", "未付金额（元）", "到期日", "确认时间"]
LINE_HEADERS = ["账单号", "房间", "序号", "类型", "项目", "编码", "数量", "金额（元）"]
ARREARS_HEADERS = ["账单号", "楼栋", "楼层", "房间", "租户", "电话", "账期", "应收金额（元）", "已付金额（元）",
                   "冲减金额（元）", "欠费金额（元）", "到期日", "逾期天数", "已发催缴"]
_FILL = PatternFill("solid", fgColor="DDE7F3")


def yuan(fen: int) -> Decimal:
    return Decimal(int(fen)) / 100


def _sheet(wb: Workbook, title: str, headers: list[str], rows: list[list[Any]], money_cols: set[int],
           totals: list[Any] | None = None) -> None:
    ws = wb.create_sheet(title)
    ws.append(headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = _FILL
    for r in rows:
        ws.append(r)
    if totals is not None:
        ws.append(totals)
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
    for col in money_cols:
        for (cell,) in ws.iter_rows(min_row=2, min_col=col, max_col=col):
            cell.number_format = MONEY
    for i, h in enumerate(headers, 1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, len(h) * 2 + 2)
    ws.freeze_panes = "A2"


def bills_xlsx(rows: list[BillRow], out: IO[bytes] | str) -> None:
    wb = Workbook()
    wb.remove(wb.active)
    body = []
    for r in rows:
        b = r.bill
        body.append([b.bill_no, r.building, r.floor, r.room, r.tenant, r.phone, b.period, b.period_start,
                     b.period_end, STATE_NAMES["overdue" if r.overdue else b.state], yuan(b.total_fen),
                     yuan(b.paid_fen), yuan(b.credited_fen), yuan(b.open_fen), b.due_date,
                     b.confirmed_at.replace(tzinfo=None) if b.confirmed_at else None])
    totals = ["合计", *[""] * 9, *(yuan(sum(getattr(r.bill, k) for r in rows)) for k in
                                  ("total_fen", "paid_fen", "credited_fen")), yuan(sum(r.bill.open_fen for r in rows)),
              "", ""]
    _sheet(wb, "账单", BILL_HEADERS, body, {11, 12, 13, 14}, totals)
    lines = [[r.bill.bill_no, r.room, ln.line_no, KIND_NAMES.get(ln.kind, ln.kind), ln.name, ln.code,
              None if ln.quantity is None else Decimal(ln.quantity), yuan(ln.amount_fen)]
             for r in rows for ln in r.lines]
    _sheet(wb, "账单明细", LINE_HEADERS, lines, {8})
    wb.save(out)


def arrears_xlsx(rows: list[BillRow], out: IO[bytes] | str) -> None:
    owed = sorted((r for r in rows if r.bill.open_fen > 0),
                  key=lambda r: (r.building, r.floor, r.room, r.bill.bill_no))
    wb = Workbook()
    wb.remove(wb.active)
    body = [[r.bill.bill_no, r.building, r.floor, r.room, r.tenant, r.phone, r.bill.period, yuan(r.bill.total_fen),
             yuan(r.bill.paid_fen), yuan(r.bill.credited_fen), yuan(r.bill.open_fen), r.bill.due_date,
             r.days_overdue, r.bill.notices_sent] for r in owed]
    totals = ["合计", *[""] * 6, *(yuan(sum(getattr(r.bill, k) for r in owed)) for k in
                                  ("total_fen", "paid_fen", "credited_fen")), yuan(sum(r.bill.open_fen for r in owed)),
              "", "", ""]
    _sheet(wb, "欠费清单", ARREARS_HEADERS, body, {8, 9, 10, 11}, totals)
    wb.save(out)

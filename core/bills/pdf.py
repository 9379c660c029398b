"""One bill as a printable A4 PDF (reportlab): the same sheet as the admin's bill page.

Chinese text uses reportlab's built-in CID font ``STSong-Light`` (Adobe's Chinese font pack, which
PDF viewers supply: no font file ships with meterpay, none is embedded); numbers, bill numbers and
dates are set in Helvetica. Amounts are fen shown as yuan with two places, exactly as the ledger
holds them: the lines add up to the total printed under them, as on the bill.
"""
from __future__ import annotations

import io
from datetime import date

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from core.bills.service import KIND_NAMES, STATE_NAMES, BillDetail
from core.ledger.money import format_fen

CJK = "STSong-Light"
LATIN = "Helvetica"
_registered = False


def _fonts() -> None:
    global _registered
    if not _registered:
        pdfmetrics.registerFont(UnicodeCIDFont(CJK))
        _registered = True


def _qty(q) -> str:
    return "" if q is None else f"{q.normalize():f}" if q == q.to_integral() else f"{q:f}".rstrip("0")


def bill_pdf(d: BillDetail, shown_state: str, *, printed: date, compress: bool = True) -> bytes:
    """The bill ``d`` (``service.detail``) as PDF bytes; ``shown_state`` as ``service.shown_state``
    gives it (overdue shows as such). ``compress=False`` leaves the page streams readable (tests)."""
    _fonts()
    bill, row = d.row.bill, d.row
    title = ParagraphStyle("t", fontName=CJK, fontSize=16, leading=22, alignment=1)
    text = ParagraphStyle("p", fontName=CJK, fontSize=10, leading=15)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=16 * mm, title=f"{bill.bill_no}", author=d.site.name,
                            pageCompression=1 if compress else 0)
    kind = "缴费通知单" if bill.kind == "bill" else "冲减单"
    meta = [["账单号", bill.bill_no, "状态", STATE_NAMES.get(shown_state, shown_state)],
            ["房间", f"{row.building} {row.floor} {row.room}".strip(), "租户", f"{row.tenant} {row.phone}".strip()],
            ["账期", f"{bill.period_start} - {bill.period_end}", "到期日",
             bill.due_date.isoformat() if bill.due_date else "确认后生成"]]
    if d.corrects is not None:
        meta.append(["更正的账单", d.corrects.bill_no, "", ""])
    if bill.reason:
        meta.append(["原因", bill.reason, "", ""])
    lines = [["序号", "类型", "项目", "数量", "金额（元）"]]
    for ln in row.lines:
        lines.append([str(ln.line_no), KIND_NAMES.get(ln.kind, ln.kind), ln.name, _qty(ln.quantity),
                      format_fen(ln.amount_fen)])
    foot = [["合计", "", "", "", format_fen(bill.total_fen)]]
    if bill.kind == "bill":
        foot += [["已付", "", "", "", format_fen(bill.paid_fen)], ["冲减", "", "", "", format_fen(bill.credited_fen)],
                 ["应付余额", "", "", "", format_fen(bill.open_fen)]]
    body = lines + foot
    n_lines = len(lines)
    grid = Table(body, colWidths=[14 * mm, 24 * mm, 78 * mm, 26 * mm, 32 * mm], repeatRows=1)
    grid.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), CJK, 10),
        ("FONT", (3, 1), (4, -1), LATIN, 10),
        ("FONT", (0, 1), (0, n_lines - 1), LATIN, 10),
        ("ALIGN", (3, 0), (4, -1), "RIGHT"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE7F3")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
        ("LINEABOVE", (0, n_lines), (-1, n_lines), 0.6, colors.black),
        ("GRID", (0, 0), (-1, n_lines - 1), 0.25, colors.grey),
        *[("SPAN", (0, r), (3, r)) for r in range(n_lines, len(body))],
        ("FONT", (4, n_lines), (4, -1), "Helvetica-Bold", 10),
    ]))
    info = Table(meta, colWidths=[22 * mm, 65 * mm, 20 * mm, 67 * mm])
    info.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), CJK, 10), ("FONT", (1, 0), (1, 0), LATIN, 10),
                              ("TEXTCOLOR", (0, 0), (0, -1), colors.grey),
                              ("TEXTCOLOR", (2, 0), (2, -1), colors.grey)]))
    story = [Paragraph(f"{_esc(d.site.name)} · {kind}", title), Spacer(1, 4 * mm), info, Spacer(1, 5 * mm), grid]
    notes = [f"{c.bill_no} 冲减 ¥{format_fen(c.total_fen)} — {c.reason}" for c in d.credits]
    notes += [f"{c.bill_no} 补开账单 ¥{format_fen(c.total_fen)} — {c.reason}" for c in d.corrections]
    if notes:
        story += [Spacer(1, 5 * mm), Paragraph("更正记录", text)] + [Paragraph(_esc(n), text) for n in notes]
    story += [Spacer(1, 8 * mm), Paragraph(f"打印日期：{printed.isoformat()}", text)]
    doc.build(story)
    return buf.getvalue()


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""Every report as an .xlsx workbook (openpyxl): a title row, Chinese headers, numbers as numbers
with formats (money ``#,##0.00``, kWh ``0.00``, m³ ``0.000``, percentages ``0.00"%"``), a totals
row (合计), a frozen header and widths that fit. Money comes from integer fen (fen / 100 as an
exact Decimal), quantities from the report's decimal strings, so a cell shows what the JSON says."""
from __future__ import annotations

from decimal import Decimal
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from core.reports.base import pct
from core.reports.energy import SHOWN_PERIODS, EnergyReport, MeterReport, YoyReport
from core.reports.finance import CHANNELS, INCOME_FIXED, IncomeReport, OrdersReport

MONEY = "#,##0.00"
PCT = '0.00"%"'
QTY = {"electricity": "0.00", "water": "0.000"}
PERIOD_NAMES = {"sharp": "尖", "peak": "峰", "flat": "平", "valley": "谷", "fixed": "固定费"}
KIND_NAMES = {"recharge": "充值", "refund": "退款", "charge": "收费项目", "apportionment": "公摊",
              "payment": "账单缴费", "adjustment": "调账", "settlement": "销户结算", "reversal": "冲正",
              "opening": "期初余额", "consumption": "用电/用水扣费"}
CHANNEL_NAMES = {"wechat": "微信", "alipay": "支付宝", "cash": "现金", "transfer": "转账", "wallet": "余额"}
UTILITY_NAMES = {"electricity": "电", "water": "水"}
# an order overview row's state (its entry's, refund's or order's), as the sheet shows it
STATE_NAMES = {"posted": "已入账", "reversed": "已冲正", "created": "已创建", "pending": "处理中", "paid": "已支付",
               "closed": "已关闭", "failed": "失败", "flagged": "待核查", "refunding": "退款中", "refunded": "已退款",
               "requested": "已申请", "unknown": "结果未知", "abnormal": "异常", "succeeded": "退款成功"}
_HEAD_FILL = PatternFill("solid", fgColor="DDE7F3")
_BOLD = Font(bold=True)


def _yuan(fen: int) -> Decimal:
    return Decimal(int(fen)) / 100


def _num(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


class _Sheet:
    def __init__(self, title: str, caption: str, headers: list[str]):
        self.wb = Workbook()
        self.ws = self.wb.active
        assert self.ws is not None
        self.ws.title = title[:31]
        self.ws.append([caption])
        self.ws["A1"].font = Font(bold=True, size=13)
        self.ws.append(headers)
        for cell in self.ws[2]:
            cell.font = _BOLD
            cell.fill = _HEAD_FILL
            cell.alignment = Alignment(horizontal="center")
        self.ws.freeze_panes = "A3"
        self.widths = [max(8, _width(h)) for h in headers]

    def row(self, values: list[Any], formats: list[str | None], *, bold: bool = False) -> None:
        self.ws.append(values)
        r = self.ws.max_row
        for i, (v, fmt) in enumerate(zip(values, formats), start=1):
            cell = self.ws.cell(row=r, column=i)
            if fmt and v is not None:
                cell.number_format = fmt
            if bold:
                cell.font = _BOLD
            self.widths[i - 1] = max(self.widths[i - 1], _width(v))

    def save(self, target: str | IO[bytes]) -> None:
        for i, w in enumerate(self.widths, start=1):
            self.ws.column_dimensions[get_column_letter(i)].width = min(w + 2, 40)
        self.wb.save(target)


def _width(v: Any) -> int:
    text = "" if v is None else str(v)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def income_xlsx(report: IncomeReport, target: str | IO[bytes]) -> None:
    codes = report.charge_codes
    inc = [*INCOME_FIXED, *codes, "apportion", "other", "total"]
    inc_names = {"electricity": "电费收入", "water": "水费收入", "apportion": "公摊收入", "other": "其他收入",
                 "total": "收入合计"}
    headers = ["期间", *[inc_names.get(k) or f"{report.charge_names.get(k) or k}收入" for k in inc],
               *[f"{CHANNEL_NAMES[c]}收款" for c in CHANNELS], "收款合计(已扣退款)", "退款"]
    sh = _Sheet("收入概况", f"{report.site} 收入概况 {report.start} 至 {report.end}", headers)
    fmts = [None] + [MONEY] * (len(headers) - 1)

    def values(r, label):
        return [label, *[_yuan(r.income.get(k, 0)) for k in inc], *[_yuan(r.cash_in.get(c, 0)) for c in CHANNELS],
                _yuan(r.cash_in.get("total", 0)), _yuan(r.refunds)]
    for r in report.rows:
        sh.row(values(r, r.period), fmts)
    sh.row(values(report.total, "合计"), fmts, bold=True)
    sh.save(target)


def energy_xlsx(report: EnergyReport, target: str | IO[bytes]) -> None:
    u, unit = report.utility, report.unit
    name = "用电综合报表" if u == "electricity" else "用水综合报表"
    fee_parts = [*SHOWN_PERIODS, *(["fixed"] if report.has_fixed else [])]
    headers = ["楼栋", "楼层", "房间", "租户", f"总量({unit})", *[f"{PERIOD_NAMES[p]}({unit})" for p in SHOWN_PERIODS],
               "费用(元)", *[f"{PERIOD_NAMES[p]}费用(元)" for p in fee_parts]]
    sh = _Sheet(name, f"{report.site} {name} {report.period}", headers)
    fmts = [None] * 4 + [QTY[u]] * 5 + [MONEY] * (1 + len(fee_parts))
    for r in report.rows:
        j = report.row_json(r)
        sh.row([r.building, r.floor, r.room, r.tenant or "", _num(j["total"]),
                *[_num(j[p]) for p in SHOWN_PERIODS], _yuan(r.fee["total"]), *[_yuan(r.fee[p]) for p in fee_parts]],
               fmts)
    t = report.row_json(report.total, with_place=False)
    sh.row(["合计", "", "", "", _num(t["total"]), *[_num(t[p]) for p in SHOWN_PERIODS],
            _yuan(report.total.fee["total"]), *[_yuan(report.total.fee[p]) for p in fee_parts]], fmts, bold=True)
    sh.save(target)


def yoy_xlsx(report: YoyReport, target: str | IO[bytes]) -> None:
    unit = "kWh" if report.utility == "electricity" else "m³"
    key_name = {"room": "房间", "building": "楼栋", "site": "项目"}[report.by]
    headers = [key_name, "月份", f"本期({unit})", f"去年同期({unit})", "同比(%)"]
    sh = _Sheet("能耗同比", f"{report.site} 能耗同比 {report.year}（{UTILITY_NAMES[report.utility]}）", headers)
    q = QTY[report.utility]
    fmts = [None, None, q, q, PCT]
    now = last = paired_now = paired_last = Decimal(0)
    any_last = False
    for r in report.rows:
        last_year = _num(r["usage_last_year"]) if r["usage_last_year"] is not None else "无数据"
        sh.row([r["key"], r["month"], _num(r["usage"]), last_year,
                _num(r["change_pct"]) if r["change_pct"] is not None else "—"], fmts)
        now += Decimal(r["usage"] or 0)
        if r["usage_last_year"] is not None:
            last += Decimal(r["usage_last_year"])
            any_last = True
            if r["usage"] is not None:
                paired_now += Decimal(r["usage"])
                paired_last += Decimal(r["usage_last_year"])
    change = pct(paired_now, paired_last) if paired_last else None  # over the months both years have
    sh.row(["合计", "", now, last if any_last else "无数据", _num(change) if change is not None else "—"], fmts,
           bold=True)
    sh.save(target)


def meter_xlsx(report: MeterReport, target: str | IO[bytes]) -> None:
    by_name = {"day": "日报表", "month": "月报表", "year": "年报表"}[report.by]
    headers = ["期间", f"用量({report.unit})", "标记"]
    flags = {None: "", "gap": "缺数", "anomaly": "异常"}
    sh = _Sheet("能耗" + by_name, f"表计 {report.meter} 能耗{by_name} {report.period}", headers)
    fmts = [None, QTY[report.kind], None]
    for r in report.rows:
        sh.row([r["period"], _num(r["usage"]) if r["usage"] is not None else "—", flags[r["flag"]]], fmts)
    sh.row(["合计", report.total, ""], fmts, bold=True)
    sh.save(target)


def orders_xlsx(report: OrdersReport, target: str | IO[bytes]) -> None:
    headers = ["时间", "楼栋", "房间", "租户", "类型", "渠道", "金额(元)", "状态", "凭证号", "支付平台交易号"]
    sh = _Sheet("订单总览", f"{report.site} 订单总览 {report.start} 至 {report.end}", headers)
    fmts: list[str | None] = [None, None, None, None, None, None, MONEY, None, None, None]
    for r in report.rows:
        sh.row([r.time.strftime("%Y-%m-%d %H:%M:%S"), r.building, r.room, r.tenant, KIND_NAMES.get(r.kind, r.kind),
                CHANNEL_NAMES.get(r.channel, r.channel), _yuan(r.amount_fen), STATE_NAMES.get(r.state, r.state),
                r.entry_id, r.provider_txn_id or ""], fmts)
    sh.row(["合计", "", "", f"{len(report.rows)} 笔", "", "", _yuan(report.total_fen), "", "", ""], fmts, bold=True)
    sh.save(target)

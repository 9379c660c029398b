"""财务管理 and 报表 pages over the hand-computed site (tests/reports/conftest.py): tables, the JSON
under /admin/api the charts read, the .xlsx exports, bad input, and who may see what."""
from __future__ import annotations

import io

from openpyxl import load_workbook

from tests.reports.conftest import plaza  # noqa: F401 - fixture


def test_finance_and_report_pages_show_the_site_figures(manage, plaza):  # noqa: F811
    manage.as_manager("fin", sites=[plaza.site])
    c, sid = manage.client, plaza.site.id
    page = c.get(f"/admin/sites/{sid}/finance/income?from=2026-04-01&to=2026-04-30&by=month").text
    assert "收入概况" in page and "43.43" in page and "200.00" in page and "property" in page
    assert "财务管理" in page and "报表" in page  # the navigation
    page = c.get(f"/admin/sites/{sid}/finance/orders?from=2026-04-01&to=2026-04-30").text
    assert "订单总览" in page and f"TXN-{plaza.order_no}" in page and "170.00" in page
    page = c.get(f"/admin/sites/{sid}/finance/orders?from=2026-04-01&to=2026-04-30&channel=wallet").text
    assert "-30.00" in page and "TXN-" not in page
    page = c.get(f"/admin/sites/{sid}/reports/energy?period=2026-04").text
    assert "用电综合报表" in page and "62.80" in page and "6.20" in page
    assert "0.125" in c.get(f"/admin/sites/{sid}/reports/energy?period=2026-04&utility=water").text
    page = c.get(f"/admin/sites/{sid}/reports/yoy?year=2026&by=building").text
    assert "能耗同比" in page and "无数据" in page
    page = c.get(f"/admin/sites/{sid}/reports/meter?meter=E102&by=day&period=2026-04").text
    assert "能耗日月年报表" in page and 'data-flag="gap"' in page and "12.00" in page


def test_the_api_serves_the_report_json_and_refuses_strangers(manage, plaza, factory):  # noqa: F811
    c, sid = manage.client, plaza.site.id
    assert c.get(f"/admin/api/sites/{sid}/income?from=2026-04-01&to=2026-04-30").status_code == 401
    manage.as_manager("fin", sites=[plaza.site])
    income = c.get(f"/admin/api/sites/{sid}/income?from=2026-04-01&to=2026-04-30&by=month").json
    assert income["rows"][0]["income"]["total"] == "43.43" and income["total"]["cash_in"]["wechat"] == "200.00"
    assert income["compare"][0]["period"] == "2026-04" and income["compare"][0]["income"] == 4343
    energy = c.get(f"/admin/api/sites/{sid}/energy?period=2026-04").json
    assert energy["total"]["fee"] == "62.80"
    yoy = c.get(f"/admin/api/sites/{sid}/yoy?year=2026&by=site").json
    assert yoy["rows"][3]["usage_last_year"] is None
    meter = c.get(f"/admin/api/sites/{sid}/meter-report?meter=E102&by=day&period=2026-04").json
    assert meter["rows"][0]["flag"] == "gap"
    orders = c.get(f"/admin/api/sites/{sid}/orders?from=2026-04-01&to=2026-04-30").json
    assert orders["total"] == "170.00"
    bad = c.get(f"/admin/api/sites/{sid}/income?from=2026-05-01&to=2026-04-30")
    assert bad.status_code == 400 and "after" in bad.json["message"]
    other = factory.site("Elsewhere")
    manage.session.commit()
    assert c.get(f"/admin/api/sites/{other.id}/energy?period=2026-04").status_code == 404
    assert c.get(f"/admin/sites/{other.id}/finance/orders").status_code == 404


def test_a_meter_of_another_site_is_not_found(manage, plaza, factory):  # noqa: F811
    from core.sites.accounts import MeterSpec
    other = factory.site("Other")
    factory.account(room=factory.room(other, "9"), meters=(MeterSpec(serial="OTHER1"),))
    manage.as_manager("fin", sites=[plaza.site])
    r = manage.client.get(f"/admin/api/sites/{plaza.site.id}/meter-report?meter=OTHER1&by=day&period=2026-04")
    assert r.status_code == 404


def test_bad_input_on_a_page_says_why_and_shows_no_figures(manage, plaza):  # noqa: F811
    manage.as_manager("fin", sites=[plaza.site])
    page = manage.client.get(f"/admin/sites/{plaza.site.id}/reports/energy?period=2026-13")
    assert page.status_code == 200 and "period" in page.text and 'id="energy"' not in page.text
    page = manage.client.get(f"/admin/sites/{plaza.site.id}/finance/income?from=2026-05-01&to=2026-04-01")
    assert "after" in page.text and 'id="income"' not in page.text


def test_every_page_exports_xlsx(manage, plaza):  # noqa: F811
    manage.as_manager("fin", sites=[plaza.site])
    sid = plaza.site.id
    for url, header in [
        (f"/admin/sites/{sid}/finance/orders.xlsx?from=2026-04-01&to=2026-04-30", "金额(元)"),
        (f"/admin/sites/{sid}/finance/income.xlsx?from=2026-04-01&to=2026-04-30&by=month", "收入合计"),
        (f"/admin/sites/{sid}/reports/energy.xlsx?period=2026-04", "费用(元)"),
        (f"/admin/sites/{sid}/reports/yoy.xlsx?year=2026", "同比(%)"),
        (f"/admin/sites/{sid}/reports/meter.xlsx?meter=E102&by=day&period=2026-04", "标记"),
    ]:
        r = manage.client.get(url)
        assert r.status_code == 200 and r.mimetype.endswith("spreadsheetml.sheet"), url
        assert "attachment" in r.headers["Content-Disposition"]
        ws = load_workbook(io.BytesIO(r.data)).active
        assert header in [c.value for c in ws[2]] and ws.cell(row=ws.max_row, column=1).value == "合计"


def test_the_pages_speak_english_when_asked(manage, plaza):  # noqa: F811
    manage.as_manager("fin", sites=[plaza.site])
    manage.client.get("/admin/lang/en")
    page = manage.client.get(f"/admin/sites/{plaza.site.id}/finance/income?from=2026-04-01&to=2026-04-30").text
    assert "Income (revenue accounts)" in page and "收入概况" not in page
    page = manage.client.get(f"/admin/sites/{plaza.site.id}/reports/yoy?year=2026").text
    assert "Year on year" in page


def test_an_order_line_links_to_its_entry_with_the_providers_transaction(manage, plaza, factory):  # noqa: F811
    import re
    manage.as_manager("fin", sites=[plaza.site])
    page = manage.client.get(f"/admin/sites/{plaza.site.id}/finance/orders?from=2026-04-01&to=2026-04-30").text
    links = re.findall(r'href="(/admin/entries/\d+)"', page)
    assert len(links) == 2
    entry = manage.client.get(links[0]).text  # newest first: the WeChat payment
    assert f"TXN-{plaza.order_no}" in entry and plaza.order_no in entry and "clearing:wechat" in entry
    assert "200.00" in entry and "-200.00" in entry
    other = factory.site("Far")
    acct = factory.account(room=factory.room(other, "1"), balance_fen=500)
    from sqlalchemy import select

    from core.models import JournalEntry
    foreign = manage.session.scalar(select(JournalEntry.id).where(JournalEntry.account_id == acct.id))
    assert manage.client.get(f"/admin/entries/{foreign}").status_code == 404
    assert manage.client.get("/admin/entries/999999").status_code == 404

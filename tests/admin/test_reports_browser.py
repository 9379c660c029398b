"""财务管理 and 报表 in headless Chromium: sign in, open each page from the navigation, see its
table and its ECharts chart drawn from /admin/api, filter, and download the .xlsx export.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import re

import pytest
from openpyxl import load_workbook

from tests.admin.browser import shot
from tests.admin.conftest import PASSWORD
from tests.reports.conftest import plaza  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def chart_drawn(page):
    page.wait_for_selector('#report-chart[data-drawn]')
    assert page.get_attribute("#report-chart", "data-drawn") == "chart"
    assert page.locator("#report-chart canvas").count() >= 1


def test_a_manager_reads_finance_and_reports_with_charts_and_exports(page, live_server, manage, plaza,  # noqa: F811
                                                                       tmp_path):
    manage.manager("fin", sites=[plaza.site])
    base, sid = live_server.url, plaza.site.id
    page.goto(f"{base}/admin/login")
    page.fill("input[name=username]", "fin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/sites/\d+/monitor$"))

    page.click("header nav >> text=财务管理")
    page.wait_for_url(re.compile(r"/finance/orders$"))
    page.fill("input[name=from]", "2026-04-01")
    page.fill("input[name=to]", "2026-04-30")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#orders tbody tr[data-entry]")
    assert page.locator("#orders tbody tr[data-entry]").count() == 2
    assert page.locator('#totals [data-k="total"]').inner_text() == "170.00"
    chart_drawn(page)
    shot(page, "reports-01-orders", full_page=True)
    with page.expect_download() as got:
        page.click("#export")
    path = tmp_path / "orders.xlsx"
    got.value.save_as(path)
    ws = load_workbook(path).active
    assert ws.cell(row=2, column=1).value == "时间" and ws.cell(row=ws.max_row, column=1).value == "合计"

    page.click("#tabs >> text=收入概况")
    page.wait_for_url(re.compile(r"/finance/income$"))
    page.goto(f"{base}/admin/sites/{sid}/finance/income?from=2026-04-01&to=2026-04-30&by=day")
    assert page.locator('#totals [data-k="income"]').inner_text() == "43.43"
    assert page.locator('#totals [data-k="cash_in"]').inner_text() == "200.00"
    assert page.locator("#income tbody tr").count() == 30
    chart_drawn(page)
    shot(page, "reports-02-income", full_page=True)
    with page.expect_download() as got:
        page.click("#export")
    assert got.value.suggested_filename.endswith(".xlsx")

    page.click("header nav >> text=报表")
    page.wait_for_url(re.compile(r"/reports/energy$"))
    page.fill("input[name=period]", "2026-04")
    page.click("#filters button[type=submit]")
    page.wait_for_selector('#energy tbody tr[data-room="102"]')
    assert "6.20" in page.locator('#energy tbody tr[data-room="102"]').inner_text()
    assert page.locator('#totals [data-k="fee"]').inner_text() == "62.80"
    chart_drawn(page)
    shot(page, "reports-03-energy", full_page=True)
    page.select_option("select[name=building]", "B")
    page.click("#filters button[type=submit]")
    page.wait_for_selector('#energy tbody tr[data-room="201"]')
    assert page.locator("#energy tbody tr").count() == 1

    page.click("#tabs >> text=能耗同比")
    page.goto(f"{base}/admin/sites/{sid}/reports/yoy?year=2026&by=building")
    assert page.locator('#yoy tr[data-key="A"][data-month="2026-04"] .nodata').count() == 1
    chart_drawn(page)
    page.select_option("#chart-key", "B")
    shot(page, "reports-04-yoy", full_page=True)

    page.click("#tabs >> text=能耗日月年报表")
    page.wait_for_url(re.compile(r"/reports/meter"))
    page.fill("input[name=meter]", "E102")
    page.select_option("select[name=by]", "day")
    page.fill("input[name=period]", "2026-04")
    page.click("#filters button[type=submit]")
    page.wait_for_selector('#meter-report tr[data-period="2026-04-02"]')
    assert page.locator('#meter-report tr[data-period="2026-04-01"] [data-flag="gap"]').count() == 1
    assert "12.00" in page.locator('#meter-report tr[data-period="2026-04-02"]').inner_text()
    chart_drawn(page)
    shot(page, "reports-05-meter", full_page=True)
    with page.expect_download() as got:
        page.click("#export")
    assert got.value.suggested_filename == "meter-E102-2026-04.xlsx"

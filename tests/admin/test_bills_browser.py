"""账单管理 in headless Chromium: from the navigation to the month's bills, confirm them all, open a bill,
print it without the controls, and take a payment at the desk."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from core.bills import generate
from core.models import Bill, Site
from tests.admin.browser import shot
from tests.admin.conftest import PASSWORD
from tests.bills.conftest import item, shop  # noqa: F401 - shop is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_manager_confirms_prints_and_collects_a_bill(page, live_server, manage, session, shop):  # noqa: F811
    item(session, shop)
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    session.commit()
    site = session.get(Site, shop.site_id)
    no = session.scalar(select(Bill.bill_no))
    manage.manager("biller", sites=[site])
    base = live_server.url
    page.goto(f"{base}/admin/login")
    page.fill("input[name=username]", "biller")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/sites/\d+/monitor$"))
    page.click("header nav >> text=账单管理")
    page.wait_for_url(re.compile(r"/bills"))
    page.fill("input[name=period]", "2026-04")
    page.click("#filters button[type=submit]")
    page.wait_for_selector(f"tr[data-bill='{no}']")
    page.click("#confirm-all button")
    page.click("#confirm-ok")
    page.wait_for_selector(".flash.ok")
    assert "已确认 1 张账单" in page.inner_text(".flash.ok")
    page.click(f"tr[data-bill='{no}'] a")
    page.wait_for_selector("#bill")
    assert page.inner_text("#open") == "205.95"
    page.emulate_media(media="print")
    assert not page.is_visible("header.top") and not page.is_visible("#actions") and page.is_visible("#lines")
    shot(page, "bill-print", full_page=True)
    page.emulate_media(media="screen")
    page.fill("#pay-form input[name=amount]", "200.00")
    page.click("#pay-form button")
    page.wait_for_selector(".flash.ok")
    assert page.inner_text("#open") == "5.95" and page.inner_text("#bill-state") == "部分付款"

"""月末结算 in headless Chromium: from the site's navigation to the preview, the run, and the steps
done. Screenshots go to test-artifacts/."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from core.models import JournalEntry
from core.monthend.schemes import add_scheme
from tests.admin.browser import shot
from tests.admin.conftest import PASSWORD
from tests.monthend.conftest import garden  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCHEME = {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "2.5", "every": "month", "day": 1,
          "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": "all"}


def test_a_manager_previews_and_runs_a_month(page, live_server, manage, session, garden):  # noqa: F811
    add_scheme(session, garden.site.id, SCHEME)
    session.commit()
    manage.manager("op", sites=[garden.site])
    base = live_server.url
    page.goto(f"{base}/admin/login")
    page.fill("input[name=username]", "op")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/sites/\d+/monitor$"))
    page.click("header nav >> text=月末结算")
    page.wait_for_url(re.compile(r"/month-end$"))
    page.fill("input[name=period]", "2026-04")
    page.click("#period-form button[type=submit]")
    page.wait_for_selector("#lines tbody tr")
    assert page.locator('#totals [data-k="charges"]').inner_text() == "350.01"  # 125.63 + 76.25 + 48.13 + 100.00
    shot(page, "monthend-01-preview", full_page=True)
    page.click("#run-form button[type=submit]")
    page.wait_for_selector("#steps")
    assert "已结算" in page.inner_text("#run-form")
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "charge")) == 4
    page.click("#monthend-tabs >> text=收费方案")
    page.wait_for_selector("#schemes tbody tr[data-scheme]")
    page.fill("#scheme-form textarea", json.dumps({**SCHEME, "code": "service", "basis": "fixed", "amount": "9"}))
    page.click("#scheme-form button[type=submit]")
    page.wait_for_selector('#schemes tbody tr[data-scheme] >> text=service')
    shot(page, "monthend-02-schemes", full_page=True)

"""批量操作 in headless Chromium: a manager picks a floor, previews, confirms a relay cut, and
watches the task's live progress reach every meter (simulated over TCP), then exports the items."""
from __future__ import annotations

import re
import threading

import pytest
from openpyxl import load_workbook

from tests.admin.browser import shot
from tests.admin.conftest import PASSWORD
from tests.batch.conftest import wired_site  # noqa: F401 - fixture
from tests.hardware.conftest import _fast_meters, simulator  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_manager_runs_a_batch_cut_and_watches_it_finish(page, live_server, manage, wired_site, tmp_path):  # noqa: F811
    from hardware import batch_engine
    site, rooms, _gws = wired_site(4)
    manage.manager("ops", sites=[site])
    base = live_server.url
    page.goto(f"{base}/admin/login")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/sites/\d+/monitor$"))
    page.click("header nav >> text=批量操作")
    page.wait_for_url(re.compile(r"/batch$"))
    page.select_option("#batch-action", "relay_off")
    page.check("input[name=scope][value=floors]")
    page.select_option("select[name=floors]", ["A:1"])
    shot(page, "batch-01-form", full_page=True)
    page.click("#preview")
    page.wait_for_selector("#preview-items")
    assert "共 4 项" in page.inner_text("main")
    shot(page, "batch-02-preview", full_page=True)
    page.click("#create")
    page.wait_for_url(re.compile(r"/admin/batch/\d+$"))
    task_id = int(page.url.rsplit("/", 1)[1])
    assert page.get_attribute("#task-state", "data-state") == "pending" and page.inner_text("#task-state") == "待执行"
    worker = threading.Thread(target=batch_engine.drive, args=(task_id,))  # a worker on queue "batch"
    worker.start()
    page.wait_for_function("document.querySelector('#task-state').dataset.state === 'finished'", timeout=60000)
    assert page.inner_text("#task-state") == "已完成"  # words for the manager, the code in data-state
    worker.join(30)
    assert page.inner_text('#task-counts [data-k="confirmed"] b') == "4"
    assert page.locator('#batch-items td.state[data-state="confirmed"]', has_text="已确认").count() == 4
    assert not any(sim.relay_on for *_x, sim in rooms)
    shot(page, "batch-03-finished", full_page=True)
    with page.expect_download() as got:
        page.click("#export")
    path = tmp_path / "items.xlsx"
    got.value.save_as(path)
    ws = load_workbook(path).active
    assert [ws.cell(row=r, column=4).value for r in range(3, ws.max_row + 1)] == ["confirmed"] * 4

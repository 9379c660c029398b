"""End to end in headless Chromium against the demo site, its meters played by the simulator over
TCP: sign in, watch the room monitor, open a room, cut its supply through the confirmation
dialog, and see the relay state change once the simulated meter confirms — on the room page and,
without reloading, on the monitor. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re

import pytest

from tests.admin.browser import shot
from tests.ports import free_port_block

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(monkeypatch, session):
    """The demo site (``core.sites.demo.seed``) with its gateways served by the simulator (``--from-db``)."""
    from core import jobs
    from core.db import session_scope
    from core.sites.demo import seed
    from hardware.simulator import Simulator
    from hardware.simulator.build import from_database
    monkeypatch.setenv("METERPAY_SIM_PORT_BASE", str(free_port_block(12)))
    monkeypatch.setenv("METERPAY_METER_TIMEOUT", "1.0")
    monkeypatch.setenv("METERPAY_COMMAND_BACKOFF", "0")
    monkeypatch.setenv("METERPAY_ADMIN_REFRESH_SECONDS", "2")
    with session_scope() as s:
        result = seed(s)
    sim = Simulator(from_database(baud=38400, turnaround=0.002)).start_in_thread()
    jobs.set_eager(False)  # commands run on the in-process worker, as in `make run`
    yield result
    jobs.wait_idle(20)
    sim.stop_thread()


def sign_in(page, base: str, user: str, password: str):
    page.goto(f"{base}/admin/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_sign_in_open_a_room_cut_its_relay_and_see_it_confirmed_by_the_meter(page, live_server, demo):
    base = live_server.url
    page.goto(f"{base}/admin/login")
    shot(page, "01-login")
    sign_in(page, base, *demo.manager)
    page.wait_for_url(re.compile(r"/admin/sites/\d+/monitor$"))
    assert page.locator("h1").first.inner_text().startswith("演示广场")
    assert page.locator("#grid a.c").count() == 100
    assert page.locator('#summary [data-k="rooms"]').inner_text() == "100"
    shot(page, "02-monitor")

    page.fill("#search", "A205")
    page.wait_for_function("document.getElementById('shown').textContent === '1'")
    page.click("#grid a.c:not(.hidden)")
    page.wait_for_url(re.compile(r"/admin/rooms/\d+$"))
    room_url = page.url
    assert "A205" in page.locator("h1").inner_text()

    page.click("#actions button.danger")  # 拉闸 / 关阀
    dialog = page.locator("#confirm-dialog")
    assert dialog.is_visible() and "A205" in dialog.inner_text()
    page.click("#confirm-ok")
    page.wait_for_url(room_url)
    assert "已下发拉闸命令" in page.locator(".flash").inner_text()

    # No reload by hand: the page follows its open command and reloads once the meter has answered.
    page.wait_for_selector('#meters tbody tr:first-child [data-state="off"]', timeout=30000)
    assert "拉闸" in page.locator("#meters tbody tr").first.inner_text()
    assert page.locator("#commands [data-state]").first.get_attribute("data-state") == "confirmed"
    shot(page, "03-room-after-trip", full_page=True)

    page.click("a.back")
    cell = page.locator("#grid a.c", has_text="A205")
    assert "s-off" in cell.get_attribute("class")
    shot(page, "04-monitor-after-trip")


def test_the_monitor_refreshes_itself_when_a_meter_changes(page, live_server, demo, session):
    from sqlalchemy import select

    from core.models import Meter
    sign_in(page, live_server.url, *demo.manager)
    page.wait_for_url(re.compile(r"/monitor$"))
    cell = page.locator("#grid a.c", has_text="B307")
    assert "s-off" not in cell.get_attribute("class")
    meter = session.scalar(select(Meter).where(Meter.serial == "EB307"))
    meter.relay_state = "off"  # as the poller would record it
    session.commit()
    page.wait_for_function("document.querySelector('#grid a.c.s-off') !== null", timeout=10000)
    assert "s-off" in cell.get_attribute("class")


def test_recharge_asks_first_and_cancel_moves_nothing(page, live_server, demo):
    sign_in(page, live_server.url, *demo.manager)
    page.wait_for_url(re.compile(r"/monitor$"))
    page.click("#grid a.c >> text=A102")
    before = page.locator("#balance").inner_text()
    page.fill("#recharge-amount", "88.50")
    page.click("#actions button.primary")
    assert "¥88.50" in page.locator("#confirm-dialog").inner_text()
    page.click("#confirm-dialog button[value=cancel]")
    assert page.locator("#balance").inner_text() == before
    page.click("#actions button.primary")
    page.click("#confirm-ok")
    page.wait_for_selector(".flash.ok")
    after = page.locator("#balance").inner_text()
    assert float(after) - float(before) == pytest.approx(88.5)
    shot(page, "05-room-after-recharge", full_page=True)


SHEET = """building,floor,room,area_m2,tenant,phone,meter_serial,meter_kind,profile,gateway,address,tariff,billing_mode,opening_balance
C,1,C101,40,新店甲,13900000001,EC101,electricity,acrel-ddsy1352,,1,商业电价,prepaid-platform,100
C,1,C102,40,新店乙,13900000002,EC102,electricity,acrel-ddsy1352,,2,商业电价,prepaid-platform,12.345
"""


def test_importing_a_sheet_shows_the_report_line_by_line(page, live_server, demo, tmp_path):
    sheet = tmp_path / "rooms.csv"
    sheet.write_text(SHEET, encoding="utf-8")
    sign_in(page, live_server.url, *demo.manager)
    page.wait_for_url(re.compile(r"/monitor$"))
    page.click("header nav >> text=批量导入")
    page.set_input_files("input[type=file]", str(sheet))
    page.click("form button.primary")
    page.wait_for_selector("#report")
    assert "opening_balance" in page.locator("#import-errors").inner_text()
    assert page.locator("#import-errors tbody tr").count() == 1
    shot(page, "10-import-report", full_page=True)


def test_opening_with_a_preset_tariff_preview_audit_and_english(page, live_server, demo, session):
    from core.sites.accounts import save_preset
    save_preset(session, "商铺标准", tariff="商业电价", opening_balance_fen=20000, site_id=demo.site_id,
                alarm_levels=[{"amount_fen": 8000}, {"amount_fen": 3000}, {"amount_fen": 0}])
    session.commit()
    base = live_server.url
    sign_in(page, base, *demo.manager)
    page.wait_for_url(re.compile(r"/monitor$"))
    page.click("header nav >> text=开户")
    page.click("button.preset")
    assert page.input_value("#opening-field") == "200.00" and page.input_value("#level1-field") == "80.00"
    page.fill("input[name=room]", "A110")
    page.fill("input[name=tenant]", "新开花店")
    page.fill("input[name=meter0_serial]", "EA110")
    shot(page, "06-open-account", full_page=True)
    page.click("#open-form button[type=submit]")
    page.click("#confirm-ok")
    page.wait_for_selector(".flash.ok")
    assert "新开花店" in page.content() and page.locator("#balance").inner_text() == "200.00"

    page.goto(f"{base}/admin/tariffs/new")
    page.click("button.example >> text=tiered")
    page.fill("#q-start", "2026-03-01")
    page.fill("#q-end", "2026-03-31")
    page.click("#preview-form button[type=submit]")
    page.wait_for_selector("#quote-total")
    assert page.locator("#quote-total").inner_text() == "¥282.15"
    shot(page, "07-tariff-preview", full_page=True)

    page.goto(f"{base}/admin/audit?front=admin")
    assert "manager:admin" in page.locator("#audit").inner_text() and "开户" in page.locator("#audit").inner_text()
    shot(page, "08-audit")
    page.click("header >> text=English")
    assert page.locator("h1").inner_text() == "Audit log"
    page.goto(f"{base}/admin/")
    shot(page, "09-monitor-english")

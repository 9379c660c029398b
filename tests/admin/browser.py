"""Headless Chromium for the admin tests: Debian's /usr/bin/chromium driven by Playwright through
``executable_path`` (``playwright install`` is never run). Outside CI the tests skip when the
browser or the driver is missing; under CI=true that is a failure (.ci/install-browser.sh installs
both)."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CI = os.environ.get("CI", "").lower() == "true"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("METERPAY_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def unavailable(reason: str):
    if CI:
        pytest.fail(f"browser tests need {reason} under CI=true (run .ci/install-browser.sh)")
    pytest.skip(f"no {reason}")


class LiveServer:
    """The real app on 127.0.0.1 in a thread (werkzeug), against the test database."""

    def __init__(self, app):
        from werkzeug.serving import make_server
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="admin-live-server", daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def live_server(app):
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _playwright():
    path = chromium_path()
    if path is None:
        unavailable("chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (pip install playwright)")
    # Playwright starts Chromium with a fresh temporary --user-data-dir of its own on every launch
    # (it refuses the flag in ``args``), so no profile is shared or left behind.
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=path, args=FLAGS, headless=True)
    except Exception as exc:  # noqa: BLE001 - a browser that does not start is "unavailable"
        pw.stop()
        unavailable(f"a working chromium ({exc.__class__.__name__}: {str(exc)[:200]})")
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def page(_playwright):
    context = _playwright.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    context.set_default_timeout(15000)
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"admin-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path

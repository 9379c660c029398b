"""docs/miniapp.md "A recharge by hand in the demo" works as written: the demo's room A101, its
tenant's last four digits 0101, the QR link that opens a page, the binding, the sandbox payment
(issue 14, item 11). One test does it step by step in Python; one runs the documented shell block."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from click.testing import CliRunner

from meterpay.cli import cli
from tests.miniapp.conftest import Tenant, balance_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(monkeypatch, pay_env):
    from core.db import session_scope
    from core.sites.demo import seed
    monkeypatch.setenv("METERPAY_PUBLIC_URL", pay_env["app"])
    from core.config import reset_settings
    reset_settings()
    with session_scope() as s:
        seed(s, history_days=0)
    yield pay_env
    reset_settings()


def a101_account_id() -> int:
    from sqlalchemy import select

    from core.db import new_session
    from core.models import Account, Room
    with new_session() as s:
        return s.scalar(select(Account.id).join(Room, Room.id == Account.room_id)
                        .where(Room.number == "A101", Account.status == "open"))


def test_the_documented_recharge_step_by_step(demo, tmp_path):
    out = CliRunner().invoke(cli, ["qr", "room", "A101", "--site", "演示广场", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    url = json.loads(out.output)["url"]
    assert url.startswith(f"{demo['app']}/m/bind?token=")
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and "演示广场 · A101" in page.text and "后四位" in page.text
    assert "13800130101" not in page.text  # the page never shows the tenant's phone
    bad = requests.get(f"{demo['app']}/m/bind?token=forged", timeout=10)
    assert bad.status_code == 400 and "无效的房间二维码" in bad.text
    assert requests.get(f"{demo['app']}/m/bind", timeout=10).status_code == 400

    tenant = Tenant(demo["app"], "demo-tenant")
    token = url.split("token=", 1)[1]
    assert tenant.post("/bindings", {"token": token, "phone_last4": "0000"}).status_code == 403
    bound = tenant.post("/bindings", {"token": token, "phone_last4": "0101"})
    assert bound.status_code == 200, bound.text
    account_id = bound.json()["id"]
    assert account_id == a101_account_id()
    before = balance_of(account_id)
    order = tenant.post(f"/accounts/{account_id}/recharge", {"amount": "50.00", "channel": "wechat"}).json()
    requests.post(order["sandbox_pay_url"], timeout=10).raise_for_status()
    assert balance_of(account_id) == before + 5000
    assert tenant.get(f"/accounts/{account_id}/balance").json()["balance_fen"] == before + 5000


def documented_block() -> str:
    text = (ROOT / "docs" / "miniapp.md").read_text(encoding="utf-8")
    section = text.split("### A recharge by hand in the demo", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the documented block needs curl and jq")
def test_the_documented_shell_block_runs_as_written(demo, tmp_path):
    """The block from the docs, run by bash; only where it runs changes: the app's address, the
    checkout's meterpay (this interpreter) and the QR code's folder."""
    app = urlparse(demo["app"])
    wrapper = tmp_path / "meterpay"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m meterpay.cli "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    script = (documented_block().replace("localhost:5000", app.netloc)
              .replace(".venv/bin/meterpay", str(wrapper)).replace("--out /tmp", f"--out {tmp_path}"))
    account_id = a101_account_id()
    before = balance_of(account_id)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "METERPAY_PUBLIC_URL": demo["app"]}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "演示广场 · A101" in done.stdout
    assert (tmp_path / "room-A101.png").exists()
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["balance_fen"] == before + 5000 == balance_of(account_id)

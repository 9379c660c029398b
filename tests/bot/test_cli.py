"""``meterpay bot ...`` commands: clear one-line errors, JSON answers."""
from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from core.models import Manager
from core.sites.managers import create_manager
from meterpay.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["bot", *args])


def test_bind_manager_sets_and_clears_the_openid(session):
    create_manager(session, "carol", "password123")
    session.commit()
    res = run("bind-manager", "carol", "o-carol")
    assert res.exit_code == 0 and json.loads(res.output)["wechat_openid"] == "o-carol"
    session.expire_all()
    assert session.scalar(select(Manager).where(Manager.username == "carol")).wechat_openid == "o-carol"
    assert run("bind-manager", "carol", "-").exit_code == 0
    session.expire_all()
    assert session.scalar(select(Manager).where(Manager.username == "carol")).wechat_openid is None


def test_bind_manager_refuses_an_unknown_manager_and_a_taken_openid(session):
    create_manager(session, "dan", "password123").wechat_openid = "o-dan"
    create_manager(session, "erin", "password123")
    session.commit()
    res = run("bind-manager", "nobody", "o-x")
    assert res.exit_code == 2 and "no manager" in res.output
    res = run("bind-manager", "erin", "o-dan")
    assert res.exit_code == 2 and "bound to manager 'dan'" in res.output


def test_room_qr_through_the_sandbox(session, sandbox, factory):
    factory.account(room=factory.room(number="Q101"))
    res = run("room-qr", "Q101")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["scene"].startswith("room:") and out["url"].startswith("http://weixin.qq.com/q/")
    assert sandbox.sent("qrcode")[0]["action_info"]["scene"]["scene_str"] == out["scene"]


def test_notify_test_reports_the_delivery(session, sandbox):
    res = run("notify-test", "--channel", "sms", "--to", "13900000099")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["status"] == "sent"


def test_run_due_prints_counts(session):
    res = run("run-due")
    assert res.exit_code == 0 and json.loads(res.output) == {"alarm_repeats": 0, "supply": {}, "notify_retries": 0}

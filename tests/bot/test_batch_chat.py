"""批量 in the manager chat: a floor's supply cut through the same confirmation code as single
commands, created confirmed by the manager, run on simulated meters; refusals and progress."""
from __future__ import annotations

import re

from sqlalchemy import select

from core.models import AuditLog, BatchTask
from core.sites.managers import create_manager
from tests.batch.conftest import wired_site  # noqa: F401 - fixture
from tests.bot.helpers import WeChat
from tests.hardware.conftest import _fast_meters, simulator  # noqa: F401 - fixtures


def _code(reply: str) -> str:
    match = re.search(r"确认 (\d{4})", reply)
    assert match, reply
    return match.group(1)


def test_a_floor_cut_needs_the_code_then_runs(client, sandbox, wired_site, session):  # noqa: F811
    from hardware import batch_engine
    site, rooms, _ = wired_site(12, per_gateway=6)  # floors 1 (101-110) and 2 (201, 202)
    m = create_manager(session, "li", "password123", sites=[site.name])
    m.wechat_openid = "o-li"
    session.commit()
    chat = WeChat(client)
    ask = chat.say("o-li", "批量 拉闸 A栋2层")
    assert "请确认" in ask and "2 项" in ask
    assert session.scalar(select(BatchTask.id)) is None  # nothing until the code
    assert "确认码不对" in chat.say("o-li", "确认 99999")
    done = chat.say("o-li", f"确认 {_code(ask)}")
    assert "已创建批量任务" in done, done
    task = session.scalars(select(BatchTask)).one()
    assert task.state == "pending" and task.item_count == 2 and task.confirmed_by == "manager:li"
    assert task.selection == {"floors": [["A", "2"]]}
    again = chat.say("o-li", f"确认 {_code(ask)}")  # the code is used up
    assert "已创建" not in again and len(session.scalars(select(BatchTask)).all()) == 1
    batch_engine.drive(task.id)
    assert [sim.relay_on for *_x, sim in rooms] == [True] * 10 + [False] * 2
    progress = chat.say("o-li", f"批量 进度 {task.id}")
    assert "已确认 2" in progress and "finished" in progress
    acts = {(a.action, a.actor) for a in session.scalars(select(AuditLog))}
    assert ("batch_create", "manager:li") in acts and ("batch_confirm", "manager:li") in acts


def test_batch_refusals(client, sandbox, factory, session):
    site = factory.site("Plaza")
    factory.account(room=factory.room(site, "301", building="A", floor="3"))
    other = factory.site("Elsewhere")
    factory.account(room=factory.room(other, "901", building="Z", floor="9"))
    for name, role in (("ops", "operator"), ("vera", "viewer")):
        mgr = create_manager(session, name, "password123", sites=["Plaza"], role=role)
        mgr.wechat_openid = f"o-{name}"
    session.commit()
    chat = WeChat(client)
    assert "格式" in chat.say("o-ops", "批量 飞 A栋3层")
    assert "找不到" in chat.say("o-ops", "批量 拉闸 Z栋9层")  # another site's building
    assert "只读" in chat.say("o-vera", "批量 拉闸 A栋3层")
    ask = chat.say("o-ops", "批量 充值 A栋3层 20")
    assert "请确认" in ask and "20" in ask
    assert "已创建" in chat.say("o-ops", f"确认 {_code(ask)}")
    task = session.scalars(select(BatchTask)).one()
    assert task.action == "recharge" and task.params == {"amount_fen": 2000}

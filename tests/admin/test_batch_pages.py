"""批量操作 pages (Flask): preview before anything is kept, confirmation for supply and money,
the list, the detail's progress JSON and controls, the .xlsx export, and who may do what."""
from __future__ import annotations

import io
import re

from openpyxl import load_workbook
from sqlalchemy import select

from core.models import AuditLog, BatchTask
from tests.admin.conftest import op_of, room_at


def shop_rooms(factory, site):
    for n, floor in (("101", "1"), ("102", "1"), ("201", "2")):
        factory.account(room=room_at(factory, site, n, "A", floor), balance_fen=5000)


def test_preview_then_confirmed_creation_of_a_supply_task(manage, factory, session):
    site = factory.site("广场")
    shop_rooms(factory, site)
    manage.as_manager("li", sites=[site])
    page = manage.client.get(f"/admin/sites/{site.id}/batch").text
    assert "批量操作" in page and "新建批量任务" in page
    form = {"action": "relay_off", "scope": "floors", "floors": "A:1", "op": op_of(page)}
    preview = manage.post(f"/admin/sites/{site.id}/batch/preview", form)
    assert preview.status_code == 200 and "批量任务预览" in preview.text
    assert "共 2 项，2 个房间" in preview.text and "确认并创建" in preview.text
    assert session.scalar(select(BatchTask.id)) is None  # a preview keeps nothing
    created = manage.post(f"/admin/sites/{site.id}/batch", {**form, "confirm": "yes"})
    assert created.status_code == 303
    task = session.scalars(select(BatchTask)).one()
    assert task.state == "pending" and task.item_count == 2 and task.confirmed_by == "manager:li"
    again = manage.post(f"/admin/sites/{site.id}/batch", {**form, "confirm": "yes"})  # a double submit
    assert again.status_code == 303 and len(session.scalars(select(BatchTask)).all()) == 1
    detail = manage.client.get(created.headers["Location"]).text
    assert "101" in detail and "102" in detail and "201" not in detail
    progress = manage.client.get(f"/admin/batch/{task.id}/progress.json").json
    assert progress["counts"]["queued"] == 2 and [i["room"] for i in progress["items"]] == ["101", "102"]
    listed = manage.client.get(f"/admin/sites/{site.id}/batch").text
    assert f'data-task="{task.id}"' in listed
    acts = {a.action for a in session.scalars(select(AuditLog))}
    assert {"batch_create", "batch_confirm"} <= acts


def test_an_unconfirmed_money_task_waits_for_a_confirmation(manage, factory, session):
    site = factory.site("公寓")
    shop_rooms(factory, site)
    manage.as_manager("wang", sites=[site])
    page = manage.client.get(f"/admin/sites/{site.id}/batch").text
    r = manage.post(f"/admin/sites/{site.id}/batch", {"action": "recharge", "scope": "all", "amount": "20.00",
                                                      "op": op_of(page)})
    assert r.status_code == 303
    task = session.scalars(select(BatchTask)).one()
    assert task.state == "unconfirmed" and task.params == {"amount_fen": 2000}
    assert "确认执行" in manage.client.get(f"/admin/batch/{task.id}").text
    assert manage.post(f"/admin/batch/{task.id}/confirm").status_code == 303
    session.expire_all()
    assert session.get(BatchTask, task.id).state == "pending"
    assert manage.post(f"/admin/batch/{task.id}/cancel").status_code == 303
    session.expire_all()
    assert session.get(BatchTask, task.id).state == "cancelled"


def test_bad_input_is_refused_on_the_form(manage, factory, session):
    site = factory.site("学校")
    shop_rooms(factory, site)
    manage.as_manager("zhao", sites=[site])
    r = manage.post(f"/admin/sites/{site.id}/batch/preview", {"action": "recharge", "scope": "all", "amount": "-5"})
    assert r.status_code == 422 and "amount" in r.text
    r = manage.post(f"/admin/sites/{site.id}/batch/preview", {"action": "relay_off", "scope": "rooms",
                                                              "rooms": "101, 999"})
    assert r.status_code == 422 and "999" in r.text
    upload = manage.post(f"/admin/sites/{site.id}/batch/preview",
                         {"action": "recharge", "scope": "rooms",
                          "file": (io.BytesIO(b"room,amount\n101,12.00\n201,3\n"), "rooms.csv")},
                         content_type="multipart/form-data")
    assert upload.status_code == 200 and "共 2 项" in upload.text
    assert session.scalar(select(BatchTask.id)) is None


def test_export_and_viewers(manage, factory, session):
    from core.batch import tasks
    site = factory.site("写字楼")
    shop_rooms(factory, site)
    task = tasks.create_task(session, site_id=site.id, action="sync_clock", selection={"all": True}, actor="cli",
                             front="cli")
    session.commit()
    manage.as_manager("viewer", sites=[site], role="viewer")
    xlsx = manage.client.get(f"/admin/batch/{task.id}/items.xlsx")
    assert xlsx.status_code == 200
    ws = load_workbook(io.BytesIO(xlsx.data)).active
    assert [ws.cell(row=r, column=2).value for r in range(3, ws.max_row + 1)] == ["101", "102", "201"]
    assert manage.post(f"/admin/batch/{task.id}/cancel").status_code == 403
    assert manage.post(f"/admin/sites/{site.id}/batch/preview", {"action": "relay_off"}).status_code == 403
    other = factory.site("别处")
    mine = manage.client.get(f"/admin/sites/{other.id}/batch")
    assert mine.status_code == 404
    assert re.search(r"校时", manage.client.get(f"/admin/batch/{task.id}").text)

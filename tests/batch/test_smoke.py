from sqlalchemy import select

from core.batch import tasks
from core.models import BatchItem, MeterCommand


def test_relay_off_over_three_rooms(wired_site, session):
    from hardware import batch_engine
    site, rooms, _gws = wired_site(3)
    task = tasks.create_task(session, site_id=site.id, action="relay_off", selection={"all": True},
                             actor="cli", front="cli", confirmed=True)
    session.commit()
    stats = batch_engine.drive(task.id)
    session.expire_all()
    items = session.scalars(select(BatchItem).where(BatchItem.task_id == task.id).order_by(BatchItem.seq)).all()
    assert [i.state for i in items] == ["confirmed"] * 3, [(i.state, i.reason) for i in items]
    keys = sorted(session.scalars(select(MeterCommand.idempotency_key)))
    assert keys == [f"batch:{task.id}:{n}" for n in (1, 2, 3)]
    assert all(sim.relay_off for _r, _a, _m, sim in rooms) if hasattr(rooms[0][3], "relay_off") else True
    assert tasks.show(session, task.id)["state"] == "finished", stats

from __future__ import annotations

from sqlalchemy import func, select

from core.batch import tasks
from core.models import BatchItem, JournalEntry, MeterCommand


def make_task(session, site, action, selection=None, params=None, **kw):
    task = tasks.create_task(session, site_id=site.id, action=action, selection=selection or {"all": True},
                             params=params, actor="tester", front="cli", confirmed=kw.pop("confirmed", True), **kw)
    session.commit()
    return task.id


def drive(task_id):
    from hardware import batch_engine
    return batch_engine.drive(task_id)


def items(session, task_id):
    session.expire_all()
    return session.scalars(select(BatchItem).where(BatchItem.task_id == task_id).order_by(BatchItem.seq)).all()


def states(session, task_id):
    return [(i.state, i.reason) for i in items(session, task_id)]


def batch_commands(session, task_id):
    session.expire_all()
    return session.scalars(select(MeterCommand).where(MeterCommand.idempotency_key.like(f"batch:{task_id}:%"))
                           .order_by(MeterCommand.id)).all()


def batch_entries(session, task_id):
    session.expire_all()
    return session.scalars(select(JournalEntry).where(JournalEntry.idempotency_key.like(f"batch:{task_id}:%"))
                           .order_by(JournalEntry.id)).all()


def count_keys(session, model, prefix):
    return session.scalar(select(func.count()).select_from(model).where(model.idempotency_key.like(prefix)))

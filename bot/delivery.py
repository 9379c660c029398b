"""Deliver notifications: one job per notification on queue "notify", retried with backoff.

``deliver(id)`` locks the row (a second worker skips it), sends it through its channel and
logs the outcome on the row: ``sent`` with the provider's reference, ``retrying`` with the
error and the next attempt time, ``failed`` after ``MAX_ATTEMPTS`` or a permanent error.
``retry_due()`` is the periodic job that enqueues the retries whose time has come, and any
notification still ``pending`` after ``STUCK_AFTER`` (its job was never queued, e.g. Redis was down
when it was committed, or a dead worker lost it): the row lock and status check make a second
delivery of one notification a no-op.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select

from bot import channels
from core import clock
from core.db import session_scope
from core.jobs import enqueue, job
from core.models import Notification

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BASE_DELAY = timedelta(seconds=30)
STUCK_AFTER = timedelta(minutes=2)


_warned: set[tuple[str, str]] = set()


def _warn_once(channel: str, error: str, notification_id: int) -> None:
    """One warning per (channel, reason) per process; the rest at debug (the row keeps the error)."""
    if (channel, error) in _warned:
        log.debug("notification %s failed for good: %s", notification_id, error)
        return
    _warned.add((channel, error))
    log.warning("notification %s failed for good: %s (further %s failures for this reason are logged at debug)",
                notification_id, error, channel)


def backoff(attempts: int) -> timedelta:
    return BASE_DELAY * (4 ** max(attempts - 1, 0))


@job("notify", timeout=60)
def deliver(notification_id: int) -> str:
    """Send one notification; returns its status afterwards."""
    with session_scope() as session:
        note = session.scalar(select(Notification).where(Notification.id == notification_id)
                              .with_for_update(skip_locked=True))
        if note is None or note.status not in ("pending", "retrying"):
            return note.status if note else "missing"
        now = clock.now()
        note.attempts += 1
        try:
            channel = channels.get(note.channel)()
            note.provider_ref = channel.send(note)
        except Exception as exc:
            if not isinstance(exc, channels.DeliveryError):
                log.exception("channel %s raised", note.channel)
                exc = channels.DeliveryError(f"{type(exc).__name__}: {exc}")
            note.last_error = str(exc)[:2000]
            if exc.permanent or note.attempts >= MAX_ATTEMPTS:
                note.status, note.next_attempt_at = "failed", None
                _warn_once(note.channel, str(exc), note.id)
            else:
                note.status, note.next_attempt_at = "retrying", now + backoff(note.attempts)
                log.info("notification %s will be retried: %s", note.id, exc)
            return note.status
        note.status, note.sent_at, note.next_attempt_at, note.last_error = "sent", now, None, None
        return note.status


def retry_due(now: datetime | None = None) -> int:
    """Periodic job: enqueue every notification whose retry time has come, and those left pending
    for longer than STUCK_AFTER (never queued). Returns how many."""
    now = now or clock.now()
    with session_scope() as session:
        ids = session.scalars(select(Notification.id).where(or_(
            and_(Notification.status == "retrying", Notification.next_attempt_at <= now),
            and_(Notification.status == "pending", Notification.created_at <= now - STUCK_AFTER)))
                              .order_by(Notification.id).limit(1000)).all()
    for nid in ids:
        enqueue(deliver, nid, queue="notify")
    return len(ids)

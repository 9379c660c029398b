"""Audit log page: who did what, when, from which front; filterable, newest first."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import g, request, url_for
from sqlalchemy import select

from admin import labels
from admin.web import bp, db, lang, render, visible_sites
from core.audit import FRONTS
from core.config import get_settings
from core.models import Account, AuditLog, Room

PAGE = 100


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@bp.get("/audit")
def audit():
    args = request.args
    stmt = select(AuditLog)
    if g.site_ids is not None:
        stmt = stmt.where(AuditLog.site_id.in_(g.site_ids or [-1]))
    site_id = args.get("site", type=int)
    if site_id:
        stmt = stmt.where(AuditLog.site_id == site_id)
    if args.get("front") in FRONTS:
        stmt = stmt.where(AuditLog.front == args["front"])
    if args.get("action"):
        stmt = stmt.where(AuditLog.action.like(f"{args['action'].strip()}%"))
    if args.get("actor"):
        stmt = stmt.where(AuditLog.actor.like(f"%{args['actor'].strip()}%"))
    if args.get("account", type=int):
        stmt = stmt.where(AuditLog.account_id == args.get("account", type=int))
    tz = ZoneInfo(get_settings().timezone)
    since, until = _day(args.get("since")), _day(args.get("until"))
    if since:
        stmt = stmt.where(AuditLog.at >= datetime.combine(since, time.min, tzinfo=tz))
    if until:
        stmt = stmt.where(AuditLog.at < datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz))
    page = max(1, args.get("page", 1, type=int))
    rows = list(db().scalars(stmt.order_by(AuditLog.id.desc()).offset((page - 1) * PAGE).limit(PAGE + 1)))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    account_ids = {r.account_id for r in rows if r.account_id}
    rooms = {}
    if account_ids:
        rooms = {aid: (rid, num) for aid, rid, num in db().execute(
            select(Account.id, Room.id, Room.number).join(Room, Room.id == Account.room_id)
            .where(Account.id.in_(account_ids)))}
    sites = visible_sites()
    keep = {k: v for k, v in args.items() if k != "page" and v}
    prev_url = url_for("admin.audit", **keep, page=page - 1) if page > 1 else None
    next_url = url_for("admin.audit", **keep, page=page + 1) if more else None
    here, zone = lang(), get_settings().timezone
    shown = {r.id: (labels.action_label(r.action, here), labels.describe(r.detail, here, zone)) for r in rows}
    return render("audit.html", rows=rows, shown=shown, rooms=rooms, sites=sites,
                  site_names={s.id: s.name for s in sites}, fronts=FRONTS, args=args, prev_url=prev_url,
                  next_url=next_url)

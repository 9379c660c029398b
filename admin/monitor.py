"""房间监控: the room monitor of a site, and the small JSON the page polls to stay live."""
from __future__ import annotations

from flask import jsonify, request
from flask_babel import gettext as _
from sqlalchemy import func, select

from admin import monitor_data as md
from admin import settings
from admin.web import bp, db, render, site_or_404, visible_sites
from core.db import utcnow
from core.models import Gateway

POLL_SLACK_S = 60  # the rule of /healthz (meterpay/health.py, check_polling)


def polling_state(session, site) -> dict:
    """The summary bar's polling cell: when the site's last poll round had a gateway answer, and
    whether that is late (older than two poll intervals plus a minute, or never)."""
    from hardware import settings as hw
    last, gateways = session.execute(select(func.max(Gateway.last_seen_at), func.count())
                                     .where(Gateway.site_id == site.id)).one()
    if not gateways:
        return {"shown": False}
    try:
        interval = max(1, int((site.settings or {}).get("poll_interval_minutes", hw.default_poll_minutes())))
    except (TypeError, ValueError):
        interval = hw.default_poll_minutes()
    age = None if last is None else (utcnow() - last).total_seconds()
    late = age is None or age > 2 * interval * 60 + POLL_SLACK_S
    text = _("从未") if age is None else _("%(n)s 分钟前", n=int(age // 60))
    return {"shown": True, "late": late, "text": text}


def refresh_seconds() -> int:
    return settings.refresh_seconds()


def _filters() -> dict:
    status = request.args.get("status", "")
    return {"building": request.args.get("building", ""), "floor": request.args.get("floor", ""),
            "status": status if status in md.STATUS_FILTERS else "", "q": request.args.get("q", "")}


@bp.get("/sites/<int:site_id>/monitor")
def monitor(site_id: int):
    site = site_or_404(site_id)
    cells = md.site_cells(db(), site)
    filters = _filters()
    shown = md.filter_cells(cells, **filters)
    buildings = sorted({c.building for c in cells}, key=md.natural_key)
    floors = sorted({c.floor for c in cells if not filters["building"] or c.building == filters["building"]},
                    key=md.natural_key)
    return render("monitor.html", site=site, sites=visible_sites(), groups=md.group(shown),
                  summary=md.summarize(cells), shown=len(shown), filters=filters, buildings=buildings,
                  floors=floors, statuses=md.STATUS_FILTERS, refresh=refresh_seconds(),
                  polling=polling_state(db(), site))


@bp.get("/sites/<int:site_id>/monitor.json")
def monitor_json(site_id: int):
    """Live refresh: {"summary": {...}, "rooms": {room_id: [fee, online, supply, balance_fen]}}; a room
    whose prepaid meter reported its balance adds the read time, one whose relay/valve disagrees
    with the desired supply adds the read time (or null) and 1 (``Cell.compact``)."""
    site = site_or_404(site_id)
    cells = md.site_cells(db(), site)
    summary = md.summarize(cells).to_dict()
    polling = polling_state(db(), site)
    if polling["shown"]:
        summary["poll"] = polling["text"]
    resp = jsonify({"summary": summary, "rooms": {str(c.room_id): c.compact() for c in cells}})
    resp.headers["Cache-Control"] = "no-store"
    return resp

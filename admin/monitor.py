"""房间监控: the room monitor of a site, and the small JSON the page polls to stay live."""
from __future__ import annotations

from flask import jsonify, request

from admin import monitor_data as md
from admin import settings
from admin.web import bp, db, render, site_or_404, visible_sites


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
                  floors=floors, statuses=md.STATUS_FILTERS, refresh=refresh_seconds())


@bp.get("/sites/<int:site_id>/monitor.json")
def monitor_json(site_id: int):
    """Live refresh: {"summary": {...}, "rooms": {room_id: [fee, online, supply, balance_fen]}}; a room
    whose prepaid meter reported its balance adds the read time, one whose relay/valve disagrees
    with the desired supply adds the read time (or null) and 1 (``Cell.compact``)."""
    site = site_or_404(site_id)
    cells = md.site_cells(db(), site)
    resp = jsonify({"summary": md.summarize(cells).to_dict(),
                    "rooms": {str(c.room_id): c.compact() for c in cells}})
    resp.headers["Cache-Control"] = "no-store"
    return resp

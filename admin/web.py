"""The one admin blueprint and what every page shares: the database session, the signed-in
manager, site access (a site you may not see is 404, never 403), roles, language and rendering."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import generate_csrf
from sqlalchemy.orm import Session

from admin import security, settings
from core import i18n
from core.db import new_session
from core.models import Manager, Room, Site
from core.sites.managers import role_at, site_ids_for

bp = Blueprint("admin", __name__, url_prefix="/admin")

PUBLIC_ENDPOINTS = {"admin.login", "admin.set_lang"}
WRITE_ROLES = ("admin", "operator")
LANGS = i18n.LANGS


def db() -> Session:
    if "admin_db" not in g:
        g.admin_db = new_session()
    return g.admin_db


@bp.teardown_app_request
def _close_db(_exc):
    s = g.pop("admin_db", None)
    if s is not None:
        s.rollback()
        s.close()


def lang() -> str:
    value = session.get("lang") or request.cookies.get("lang") or "zh"
    return value if value in LANGS else "zh"


def actor() -> str:
    return f"manager:{g.manager.username}"


def new_op() -> str:
    """A fresh key for a form that moves money or sends a command: submitting it twice acts once."""
    return uuid.uuid4().hex


def op_key(kind: str) -> str:
    op = request.form.get("op", "")
    try:
        op = uuid.UUID(op).hex
    except ValueError:
        op = new_op()
    return f"admin:{kind}:{op}"


def _now_ts() -> float:
    return datetime.now(UTC).timestamp()


def sign_in(manager: Manager) -> None:
    keep = {"lang": session.get("lang")}
    session.clear()
    session.update({k: v for k, v in keep.items() if v})
    session.permanent = True
    session["mid"] = manager.id
    session["login_at"] = session["seen_at"] = _now_ts()
    generate_csrf()


def sign_out() -> None:
    keep = session.get("lang")
    session.clear()
    if keep:
        session["lang"] = keep


@bp.before_request
def _guard():
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        security.check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    mid = session.get("mid")
    now = _now_ts()
    expired = (mid is None
               or now - session.get("seen_at", 0) > settings.idle_minutes() * 60
               or now - session.get("login_at", 0) > settings.max_session_hours() * 3600)
    manager = db().get(Manager, mid) if not expired else None
    if manager is None or not manager.active:
        was_signed_in = mid is not None
        sign_out()
        if wants_json():
            abort(401)
        return redirect(url_for("admin.login", next=request.full_path if request.method == "GET" else None,
                                expired=1 if was_signed_in else None))
    session["seen_at"] = now
    g.manager = manager
    g.site_ids = site_ids_for(db(), manager.id)
    return None


def visible_sites() -> list[Site]:
    from sqlalchemy import select
    stmt = select(Site).order_by(Site.name)
    if g.site_ids is not None:
        stmt = stmt.where(Site.id.in_(g.site_ids or [-1]))
    return list(db().scalars(stmt))


def site_or_404(site_id: int) -> Site:
    site = db().get(Site, site_id)
    if site is None or (g.site_ids is not None and site.id not in g.site_ids):
        abort(404)
    return site


def room_or_404(room_id: int) -> Room:
    room = db().get(Room, room_id)
    if room is None or (g.site_ids is not None and room.site_id not in g.site_ids):
        abort(404)
    return room


def can_write(site_id: int | None) -> bool:
    if site_id is None:
        return any(r.role in WRITE_ROLES for r in g.manager.roles)
    return role_at(db(), g.manager.id, site_id) in WRITE_ROLES


def require_write(site_id: int | None) -> None:
    if not can_write(site_id):
        abort(403)


def is_admin() -> bool:
    return any(r.role == "admin" for r in g.manager.roles)


def render(template: str, status: int = 200, **ctx):
    return render_template(f"admin/{template}", **ctx), status


@bp.app_template_filter("entry_kind")
def _entry_kind(kind: str) -> str:
    """A ledger entry kind in the manager's language (the catalog the bot uses too)."""
    return i18n.entry_kind_label(kind, lang())


@bp.app_context_processor
def _ctx():
    if not request.path.startswith("/admin"):
        return {}
    return {"csrf_token": generate_csrf, "lang": lang(), "manager": g.get("manager"),
            "can_write": can_write}


@bp.get("/lang/<code>")
def set_lang(code: str):
    if code in LANGS:
        session["lang"] = code
    return redirect(safe_next(request.args.get("next") or request.referrer))


def safe_next(target: str | None) -> str:
    """Only paths of this site: never redirect a manager to another host after sign-in."""
    if target and target.startswith(request.host_url):
        target = "/" + target[len(request.host_url):]
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("admin.index")
    return target


@bp.app_template_filter("yuan")
def _yuan(fen) -> str:
    from core.ledger.money import format_fen
    return "" if fen is None else format_fen(int(fen))


@bp.app_template_filter("qty")
def _qty(value, kind: str = "electricity") -> str:
    """Register values as meters show them: kWh to 0.01, m³ to 0.001."""
    from decimal import Decimal
    return str(Decimal(value).quantize(Decimal("0.001") if kind == "water" else Decimal("0.01")))


@bp.app_template_filter("localtime")
def _localtime(at, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if at is None:
        return ""
    from zoneinfo import ZoneInfo

    from core.config import get_settings
    return at.astimezone(ZoneInfo(get_settings().timezone)).strftime(fmt)


ERRORS = {
    400: "表单已过期或无效，请返回刷新页面后重试。",
    403: "您没有权限执行此操作。",
    404: "没有找到该页面，或您无权查看。",
}


def wants_json() -> bool:
    """The pages' data (``*.json``, ``/admin/api/...``) and htmx requests get JSON errors, not pages."""
    return (request.path.endswith(".json") or request.path.startswith("/admin/api/")
            or bool(request.headers.get("HX-Request")))


def _error_page(err):
    message = _(ERRORS[err.code])
    if wants_json():
        return {"code": err.name.lower().replace(" ", "_"), "message": message}, err.code
    return render("error.html", err.code, message=message, code=err.code)


for _code in ERRORS:
    bp.register_error_handler(_code, _error_page)

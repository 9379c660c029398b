"""Sign-in and sign-out pages, and the start page (the sites this manager may see)."""
from __future__ import annotations

from flask import redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from admin import security
from admin.web import bp, db, render, safe_next, sign_in, sign_out, visible_sites
from core.models import Manager
from core.sites.managers import verify_password


@bp.route("/login", methods=["GET", "POST"])
@security.limit_by_user
@security.limit_by_address
def login():
    error = None
    status = 200
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        manager = db().scalar(select(Manager).where(Manager.username == username)) if username else None
        if manager is not None and manager.active and verify_password(manager, password):
            security.login_succeeded()
            sign_in(manager)
            return redirect(safe_next(request.args.get("next")))
        error = _("用户名或密码错误。")
        status = 401
    elif request.args.get("expired"):
        error = _("登录已过期，请重新登录。")
    return render("login.html", status, error=error, username=username)


@bp.errorhandler(429)
def too_many_attempts(_err):
    """The sign-in limit (admin.security) was reached: the form again, with the reason."""
    username = (request.form.get("username") or "").strip()
    return render("login.html", 429, error=_("尝试次数过多，请稍后再试。"), username=username)


@bp.post("/logout")
def logout():
    sign_out()
    return redirect(url_for("admin.login"))


@bp.get("/")
def index():
    sites = visible_sites()
    if len(sites) == 1:
        return redirect(url_for("admin.monitor", site_id=sites[0].id))
    return render("sites.html", sites=sites)

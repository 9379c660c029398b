"""Sign-in and sign-out pages, and the start page (the sites this manager may see)."""
from __future__ import annotations

from flask import redirect, request, url_for
from sqlalchemy import select

from admin import security
from admin.web import bp, db, render, safe_next, sign_in, sign_out, t, visible_sites
from core.models import Manager
from core.sites.managers import verify_password


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    status = 200
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        if security.login_blocked(username):
            error = t("尝试次数过多，请稍后再试。", "Too many attempts; try again later.")
            status = 429
        else:
            manager = db().scalar(select(Manager).where(Manager.username == username)) if username else None
            if manager is not None and manager.active and verify_password(manager, password):
                security.login_succeeded(username)
                sign_in(manager)
                return redirect(safe_next(request.args.get("next")))
            security.login_failed(username)
            error = t("用户名或密码错误。", "Wrong username or password.")
            status = 401
    elif request.args.get("expired"):
        error = t("登录已过期，请重新登录。", "Your session expired; please sign in again.")
    return render("login.html", status, error=error, username=username)


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

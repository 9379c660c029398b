"""Flask app factory: each front registers its own blueprints through ``init_app(app)``."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from flask import Flask, jsonify, request
from flask.sessions import SecureCookieSessionInterface

from core import config
from core.config import get_settings
from core.errors import MeterpayError

ROOT = Path(__file__).resolve().parent.parent


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions without two costs every request paid (the API's too, which
    uses no session): the signing serializer is built once per set of keys instead of per
    request, and a request without a Cookie header gets an empty session without parsing."""

    def __init__(self) -> None:
        self._serializers: dict = {}

    def get_signing_serializer(self, app: Flask):
        if not app.secret_key:
            return None
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            if len(self._serializers) >= 8:
                self._serializers.clear()
            serializer = self._serializers[key] = super().get_signing_serializer(app)
        return serializer

    def open_session(self, app: Flask, request):
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)


def create_app(test_config: dict | None = None) -> Flask:
    settings = get_settings()
    app = Flask("meterpay", template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "admin" / "static"), static_url_path="/static")
    app.config.update(SECRET_KEY=settings.secret_key, JSON_AS_ASCII=False,
                      MAX_CONTENT_LENGTH=8 * 1024 * 1024)
    app.json.ensure_ascii = False
    app.session_interface = SessionInterface()
    if test_config:
        app.config.update(test_config)
    from meterpay import logs, metrics
    metrics.configure("run")  # a no-op under `meterpay serve` (gunicorn's master chose "web")
    logs.configure("web", settings.log_level)
    hops = config.get("METERPAY_PROXY_HOPS")
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops,  # type: ignore
                                x_prefix=hops)
    from core.signals import load_listeners
    load_listeners()

    from meterpay import health
    app.register_blueprint(health.bp)
    metrics.init_app(app)
    _outage_answers(app)

    import admin
    import bot
    import miniapp_api
    for front in (miniapp_api, bot, admin):
        front.init_app(app)
    from miniapp_api import landing  # where a room's QR code points outside WeChat: /m/bind?token=...
    app.register_blueprint(landing.bp)
    _limiter_on_admin_only(app)

    @app.errorhandler(MeterpayError)
    def _domain_error(err: MeterpayError):
        return jsonify(err.to_dict()), err.http_status

    return app


def _limiter_on_admin_only(app: Flask) -> None:
    """Flask-Limiter's request hooks run for /admin requests only (its blueprint's hooks).

    Only the admin sign-in has limits, and ``admin.security``'s request filter already exempts
    every other request, but Flask-Limiter resolves its meta limits and exemption scopes before
    asking the filter: ~6% of the web's CPU under the tenants' mix (``bench load``) went there.
    Registered on the ``admin`` blueprint the hooks run for exactly the requests the filter lets
    through (first among admin's own, as they ran before them); nothing changes for /admin."""
    from admin.security import limiter
    moved = False
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        found = [f for f in hooks.get(None, []) if getattr(f, "__self__", None) is limiter
                 or (isinstance(f, functools.partial) and f.args[:1] == (limiter,))]
        for f in found:
            hooks[None].remove(f)
            hooks.setdefault("admin", []).insert(0, f)
            moved = True
    if not moved:  # a Flask-Limiter that registers differently: leave it as it is (correct, slower)
        logging.getLogger("meterpay.web").debug("Flask-Limiter hooks not found; left app-wide")


UNAVAILABLE = {"code": "unavailable",
               "message": "服务暂时不可用，请稍后再试 (temporarily unavailable, try again shortly)"}


def _outage_answers(app: Flask) -> None:
    """The database or Redis went away mid-request: a quick 503 with Retry-After, never a 500
    traceback. Nothing was committed by such a request (a commit that succeeded is never undone by
    a failed enqueue after it: core.jobs swallows that and the sweeps deliver the work)."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    log = logging.getLogger("meterpay.web")

    def unavailable(what: str, exc: BaseException):
        log.warning("%s unavailable during %s %s: %s", what, request.method, request.path,
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if request.path.startswith("/admin") and request.accept_mimetypes.accept_html:
            resp = app.response_class(
                f"<!doctype html><meta charset=utf-8><title>503</title><p>{UNAVAILABLE['message']}</p>"
                f"<p><a href=\"{request.path}\">↻</a></p>", status=503, mimetype="text/html")
        else:
            resp = jsonify({**UNAVAILABLE, "unavailable": what})
            resp.status_code = 503
        resp.headers["Retry-After"] = "5"
        return resp

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError):
        from meterpay.worker import is_disconnect
        if not is_disconnect(exc):
            raise exc
        return unavailable("database", exc)

    @app.errorhandler(PoolTimeout)
    def _pool_timeout(exc: PoolTimeout):
        return unavailable("database", exc)

    @app.errorhandler(RedisError)
    def _redis_error(exc: RedisError):
        return unavailable("redis", exc)

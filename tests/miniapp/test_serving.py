"""How `meterpay serve` runs the app, the cached token check on the hot path, and `meterpay bench api`."""
from __future__ import annotations

import importlib
import json
import time

import pytest
from click.testing import CliRunner


def test_a_token_verified_once_still_expires_and_a_tampered_copy_is_still_refused(monkeypatch):
    from miniapp_api import auth
    token = auth.issue_token("tenant-openid")
    assert auth.openid_from_token(token) == "tenant-openid"
    assert auth.openid_from_token(token) == "tenant-openid"  # the second check is a cache hit
    with pytest.raises(auth.Unauthorized, match="bad token"):
        auth.openid_from_token(token[:-2] + ("xx" if not token.endswith("xx") else "yy"))
    monkeypatch.setenv("METERPAY_MINIAPP_TOKEN_TTL", "60")
    real_time = time.time
    monkeypatch.setattr(auth.time, "time", lambda: real_time() + 61)
    with pytest.raises(auth.Unauthorized, match="expired"):
        auth.openid_from_token(token)


def test_a_token_signed_under_another_secret_key_is_refused_even_after_it_was_verified(monkeypatch):
    from core.config import reset_settings
    from miniapp_api import auth
    token = auth.issue_token("tenant-openid")
    assert auth.openid_from_token(token) == "tenant-openid"
    monkeypatch.setenv("METERPAY_SECRET_KEY", "a-rotated-secret-key")
    reset_settings()
    try:
        with pytest.raises(auth.Unauthorized, match="bad token"):
            auth.openid_from_token(token)
    finally:
        monkeypatch.undo()
        reset_settings()


def _serve_args(monkeypatch, *cli_args, **env) -> list[str]:
    from meterpay.cli.base import cli
    for name in ("METERPAY_WEB_THREADS", "METERPAY_WEB_WORKERS", "METERPAY_HOST", "METERPAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from core.config import reset_settings
    reset_settings()
    seen = []
    monkeypatch.setattr("os.execv", lambda exe, args: seen.append(args))
    result = CliRunner().invoke(cli, ["serve", *cli_args])
    reset_settings()
    assert result.exit_code == 0, result.output
    return seen[0]


def test_serve_runs_gunicorn_with_two_workers_and_the_meterpay_config(monkeypatch):
    args = _serve_args(monkeypatch, METERPAY_PORT="5123")
    assert args[1:3] == ["-m", "gunicorn"]
    assert args[args.index("-c") + 1] == "python:meterpay.gunicorn_conf"
    assert args[args.index("--workers") + 1] == "2"
    assert args[args.index("--bind") + 1] == "127.0.0.1:5123"
    assert args[args.index("--threads") + 1] == "4"


def test_serve_flags_and_variables_still_choose_workers_threads_and_address(monkeypatch):
    args = _serve_args(monkeypatch, "--workers", "3", "--host", "0.0.0.0", METERPAY_PORT="5124",
                       METERPAY_WEB_THREADS="6")
    assert args[args.index("--workers") + 1] == "3"
    assert args[args.index("--threads") + 1] == "6"
    assert args[args.index("--bind") + 1] == "0.0.0.0:5124"
    args = _serve_args(monkeypatch, METERPAY_WEB_WORKERS="4", METERPAY_HOST="10.0.0.5")
    assert args[args.index("--workers") + 1] == "4"
    assert args[args.index("--bind") + 1].startswith("10.0.0.5:")


def test_the_access_log_is_off_unless_asked_for_and_the_worker_is_threaded(monkeypatch):
    from meterpay import gunicorn_conf
    for name in ("METERPAY_ACCESS_LOG", "METERPAY_WEB_WORKER_CLASS", "METERPAY_WEB_KEEPALIVE"):
        monkeypatch.delenv(name, raising=False)
    conf = importlib.reload(gunicorn_conf)
    assert conf.accesslog is None and conf.worker_class == "gthread" and conf.keepalive >= 5
    monkeypatch.setenv("METERPAY_ACCESS_LOG", "1")
    monkeypatch.setenv("METERPAY_WEB_KEEPALIVE", "30")
    conf = importlib.reload(gunicorn_conf)
    assert conf.accesslog == "-" and conf.keepalive == 30
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


def test_each_worker_gets_a_1_ms_gil_switch_interval_unless_told_otherwise(monkeypatch):
    import sys

    from meterpay import gunicorn_conf
    saved = sys.getswitchinterval()
    try:
        for value, expected in ((None, 0.001), ("2.5", 0.0025), ("nonsense", 0.001), ("0", 0.001)):
            if value is None:
                monkeypatch.delenv("METERPAY_WEB_SWITCH_INTERVAL_MS", raising=False)
            else:
                monkeypatch.setenv("METERPAY_WEB_SWITCH_INTERVAL_MS", value)
            conf = importlib.reload(gunicorn_conf)
            conf.post_worker_init(object())
            assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        import gc
        gc.unfreeze()  # post_worker_init froze this test process's objects (see the next test)
        sys.setswitchinterval(saved)
        monkeypatch.undo()
        importlib.reload(gunicorn_conf)


def test_each_worker_freezes_its_long_lived_objects_once_loaded_and_once_warm():
    """A full collection no longer scans the app's modules, mappers and schemas (160-180 ms pauses
    of the whole worker under bench load, docs/miniapp.md)."""
    import gc
    import sys

    from meterpay import gunicorn_conf
    saved = sys.getswitchinterval()
    conf = importlib.reload(gunicorn_conf)
    try:
        conf.post_worker_init(object())
        loaded = gc.get_freeze_count()
        assert loaded > 0
        gc.unfreeze()
        junk = [[i] for i in range(1000)]  # objects the first requests made
        for _ in range(conf.GC_REFREEZE_AFTER - 1):
            conf.post_request(None, None, {}, None)
        assert gc.get_freeze_count() == 0
        conf.post_request(None, None, {}, None)
        assert gc.get_freeze_count() >= len(junk)
        gc.unfreeze()
        conf.post_request(None, None, {}, None)  # once only
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        sys.setswitchinterval(saved)
        importlib.reload(gunicorn_conf)


def test_the_master_starts_the_web_metrics_fresh_and_a_dead_worker_gives_up_its_gauges(monkeypatch):
    """gunicorn's on_starting (master) and child_exit hooks stay in the config beside the worker hooks."""
    from meterpay import gunicorn_conf, metrics
    calls = []
    monkeypatch.setattr(metrics, "configure", lambda role, fresh=False: calls.append(("configure", role, fresh)))
    monkeypatch.setattr(metrics, "web_worker_exit", lambda pid: calls.append(("exit", pid)))
    gunicorn_conf.on_starting(None)
    gunicorn_conf.child_exit(None, type("Worker", (), {"pid": 4242})())
    assert calls == [("configure", "web", True), ("exit", 4242)]


def test_bench_api_refuses_bad_options_in_one_line():
    from meterpay.cli.base import cli
    result = CliRunner().invoke(cli, ["bench", "api", "--runs", "0"])
    assert result.exit_code != 0 and "--runs" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_bench_api_measures_ping_and_balance_on_meterpay_serve_without_errors(database_url):
    from meterpay.cli.base import cli
    result = CliRunner().invoke(cli, ["bench", "api", "--seconds", "1", "--concurrency", "4", "--runs", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["server"].startswith("meterpay serve (gunicorn gthread, 2 workers")
    assert len(out["runs"]) == 2 and out["access_log"] is False
    for run in out["runs"]:
        for side in ("trivial", "balance"):
            assert run[side]["requests"] > 0 and run[side]["errors"] == 0, (side, run[side]["error_kinds"])
    assert out["balance"]["path"].endswith("/balance") and out["median"]["ratio"] > 0
    # A recharge committed by the bench (not the server) is what both workers answer next.
    assert out["freshness"]["ok"] is True and out["freshness"]["stale_reads_after"] == 0
    assert out["balance_cache"] is out["database"].startswith("postgresql")


def test_sessions_still_round_trip_and_a_request_without_cookies_gets_an_empty_one(monkeypatch):
    from flask import session

    from meterpay.app import create_app
    app = create_app({"TESTING": True})

    @app.get("/_t/set")
    def _set():
        session["who"] = "manager-1"
        return "ok"

    @app.get("/_t/get")
    def _get():
        return session.get("who", "nobody")

    with app.test_client() as c:
        assert c.get("/_t/get").text == "nobody"
        c.get("/_t/set")
        assert c.get("/_t/get").text == "manager-1"
        assert c.get("/_t/get").text == "manager-1"  # the cached serializer verifies the same cookie
        cookie = c.get_cookie("session").value
    with app.test_client() as fresh:
        assert fresh.get("/_t/get").text == "nobody"
        fresh.set_cookie("session", cookie[:-2] + ("xx" if not cookie.endswith("xx") else "yy"))
        assert fresh.get("/_t/get").text == "nobody"  # a tampered cookie is still refused
    original_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "another-key"
    with app.test_client() as c2:
        c2.set_cookie("session", cookie)
        assert c2.get("/_t/get").text == "nobody"  # a changed key gets another serializer
    app.config["SECRET_KEY_FALLBACKS"] = [original_key]
    with app.test_client() as c3:
        c3.set_cookie("session", cookie)
        assert c3.get("/_t/get").text == "manager-1"  # ... and fallbacks still verify

"""`serve` and `run` refuse a secret key anyone could know; `run --demo` warns; the demo's sandbox
answers SMS and voice (issue 14, items 8 and 9)."""
from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner

from core import config
from core.config import DEFAULT_SECRET_KEY
from meterpay.cli.base import cli
from meterpay.cli.serve import SANDBOX_ENV

GOOD_KEY = "k" * 32


class Started(Exception):
    """Raised by the patched make_server: the web server would start now."""


@pytest.fixture
def launch(monkeypatch):
    """Run a command with the process-starting calls recorded instead of made."""
    seen: dict[str, list] = {"execv": [], "popen": [], "make_server": []}
    monkeypatch.setattr("os.execv", lambda exe, args: seen["execv"].append(args))

    class Popen:
        def __init__(self, args, *a, **kw):
            seen["popen"].append(args)

        def poll(self):
            return 0

    monkeypatch.setattr("subprocess.Popen", Popen)

    def make_server(*args, **kwargs):
        seen["make_server"].append(args)
        raise Started

    monkeypatch.setattr("werkzeug.serving.make_server", make_server)

    class NoScheduler:
        def __init__(self, *a, **kw):
            pass

        def start(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr("core.jobs.InProcessScheduler", NoScheduler)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    for name in SANDBOX_ENV:  # `run --demo` sets these in its own environment; put them back afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    def invoke(key: str | None, *args: str):
        if key is None:
            monkeypatch.delenv("METERPAY_SECRET_KEY", raising=False)
        else:
            monkeypatch.setenv("METERPAY_SECRET_KEY", key)
        config.reset_settings()
        try:
            result = CliRunner().invoke(cli, list(args))
        finally:
            config.reset_settings()
        return result, seen
    yield invoke
    monkeypatch.undo()
    config.reset_settings()


@pytest.mark.parametrize("key, reason", [(None, "is not set"), ("", "is not set"),
                                         (DEFAULT_SECRET_KEY, "documented default"),
                                         ("k" * 31, "31 characters long")])
def test_serve_refuses_a_key_that_is_unset_the_default_or_short(launch, key, reason):
    result, seen = launch(key, "serve")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: METERPAY_SECRET_KEY") and reason in result.stderr
    assert "32+ random characters" in result.stderr
    assert seen["execv"] == []


def test_serve_starts_with_32_characters(launch):
    result, seen = launch(GOOD_KEY, "serve")
    assert result.exit_code == 0, result.output
    assert len(seen["execv"]) == 1 and "gunicorn" in seen["execv"][0]


def test_run_refuses_before_it_starts_anything(launch):
    result, seen = launch(None, "run")
    assert result.exit_code == 2 and result.stderr.startswith("error: METERPAY_SECRET_KEY is not set")
    assert seen["popen"] == [] and seen["make_server"] == []
    result, seen = launch(DEFAULT_SECRET_KEY, "run")
    assert result.exit_code == 2 and seen["make_server"] == []


def test_run_demo_warns_and_goes_on(launch):
    result, seen = launch(None, "run", "--demo")
    assert isinstance(result.exception, Started), result.output
    assert result.stderr.startswith("warning: METERPAY_SECRET_KEY is not set")
    assert len(seen["make_server"]) == 1
    assert any("sandbox" in args for args in seen["popen"])


def test_run_with_a_good_key_says_nothing_about_it(launch):
    result, seen = launch(GOOD_KEY, "run")
    assert isinstance(result.exception, Started)
    assert "METERPAY_SECRET_KEY" not in result.stderr and len(seen["make_server"]) == 1


def test_config_check_reports_a_weak_key(monkeypatch):
    monkeypatch.setenv("METERPAY_SECRET_KEY", "short")
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 2
    assert "error: METERPAY_SECRET_KEY is 5 characters long" in result.stderr
    monkeypatch.setenv("METERPAY_SECRET_KEY", GOOD_KEY)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert "METERPAY_SECRET_KEY" not in result.stderr


def test_the_demo_points_sms_and_voice_at_the_sandbox_which_delivers_them(monkeypatch):
    from werkzeug.serving import make_server

    from bot.channels.sms import Sms
    from bot.channels.voice import Voice
    from core.models import Notification
    from meterpay.sandbox import create_sandbox_app
    server = make_server("127.0.0.1", 0, create_sandbox_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {k: v.format(port=server.server_port) for k, v in SANDBOX_ENV.items()}
        assert env["METERPAY_SMS_URL"] == f"http://127.0.0.1:{server.server_port}/sandbox/sms/send"
        assert env["METERPAY_VOICE_URL"] == f"http://127.0.0.1:{server.server_port}/sandbox/voice/call"
        for name in ("METERPAY_SMS_KEY", "METERPAY_VOICE_KEY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        note = Notification(recipient="13800130101", body="A101 余额不足", data={"room": "A101", "balance": "5.00"})
        assert Sms.configured() and Sms().send(note).startswith("sandbox-sms-")
        assert Voice.configured() and Voice().send(note).startswith("sandbox-voice-")
    finally:
        server.shutdown()

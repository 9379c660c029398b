"""`meterpay run` and `meterpay serve` answer /healthz on METERPAY_PORT (real processes, real HTTP)."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.3)
    raise AssertionError("no /healthz answer in time")


@pytest.fixture
def fresh_env(tmp_path):
    port = free_port()
    env = {**os.environ, "METERPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}", "METERPAY_PORT": str(port)}
    env.pop("METERPAY_REDIS_URL", None)
    subprocess.run([sys.executable, "-m", "meterpay.cli", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    return env, port


@pytest.mark.parametrize("command", [["run"], ["serve", "--workers", "1"]])
def test_the_web_app_answers_healthz_on_the_configured_port(fresh_env, command):
    env, port = fresh_env
    proc = subprocess.Popen([sys.executable, "-m", "meterpay.cli", *command], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        body = wait_for_health(port, proc)
        assert body["status"] == "ok" and body["database"]["dialect"] == "sqlite"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

"""deploy/ is shipped, not described: the systemd units verify and restart for ever, the Procfile
names real commands, the example environment declares real variables, the nginx site passes
`nginx -t`, and the backup script makes a dump that restores."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from core import config
from core.jobs import QUEUES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUPERVISED = ("meterpay-web.service", "meterpay-worker@.service", "meterpay-scheduler.service")


def unit(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def meterpay_args(command: str) -> list[str]:
    args = shlex.split(command)
    return args[args.index(next(a for a in args if a.endswith("meterpay"))) + 1:]


def check_command(args: list[str]) -> None:
    from meterpay.cli import cli
    ctx = cli.make_context("meterpay", list(args), resilient_parsing=True)
    sub = cli.get_command(ctx, args[0])
    assert sub is not None, args
    sub.make_context(args[0], args[1:])   # options parse
    if "--queues" in args:
        queues = args[args.index("--queues") + 1].split(",")
        assert set(queues) <= set(QUEUES) or queues == ["%I"], queues


@pytest.mark.parametrize("name", SUPERVISED)
def test_each_process_runs_under_systemd_and_is_restarted_for_ever(name):
    u = unit(name)
    assert u["Restart"] == ["always"] and u["StartLimitIntervalSec"] == ["0"]
    assert 1 <= int(u["RestartSec"][0]) <= 10
    assert u["EnvironmentFile"] == ["/etc/meterpay/meterpay.env"] and u["User"] == ["meterpay"]
    args = meterpay_args(u["ExecStart"][0])
    check_command([a for a in args if a not in ("--name", "%p-%i")])


def test_the_target_starts_a_worker_for_every_queue_and_the_scheduler():
    wants = " ".join(unit("meterpay.target")["Wants"])
    assert "meterpay-web.service" in wants and "meterpay-scheduler.service" in wants
    assert {q for q in re.findall(r"meterpay-worker@(\w+)\.service", wants)} == set(QUEUES)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    for f in (DEPLOY / "systemd").iterdir():
        text = re.sub(r"ExecStart=\S+", "ExecStart=/bin/true", f.read_text())
        (tmp_path / f.name).write_text(text)
    shutil.copy(tmp_path / "meterpay-worker@.service", tmp_path / "meterpay-worker@meters.service")
    names = [p.name for p in tmp_path.iterdir() if p.name != "meterpay-worker@.service"]
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", *[f"./{n}" for n in names]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not re.search(r"Unknown (key|section)|Invalid|Failed to parse", res.stdout + res.stderr), res.stderr


def test_the_procfile_names_real_commands():
    lines = [ln for ln in (DEPLOY / "Procfile").read_text().splitlines() if ln and not ln.startswith("#")]
    kinds = {ln.split(":", 1)[0] for ln in lines}
    assert {"web", "scheduler", "release"} <= kinds and any(k.startswith("worker") for k in kinds)
    covered = set()
    for ln in lines:
        args = meterpay_args(ln.split(":", 1)[1])
        check_command(args)
        if args[0] == "worker":
            covered |= set(args[args.index("--queues") + 1].split(","))
    assert covered == set(QUEUES)


def test_the_example_environment_declares_only_real_variables():
    from meterpay.settings import load_all
    load_all()
    declared = {v.name: v for v in config.variables()}
    for line in (DEPLOY / "meterpay.env.example").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        assert name in declared, name
        if "CHANGE-ME" not in value:
            declared[name].parse(value)
    text = (DEPLOY / "meterpay.env.example").read_text()
    assert "METERPAY_PROXY_HOPS=1" in text and "METERPAY_METRICS_DIR=/run/meterpay/metrics" in text
    assert "/run/meterpay/metrics" in (DEPLOY / "tmpfiles-meterpay.conf").read_text()


def test_the_nginx_site_sends_what_proxyfix_reads_for_one_hop():
    site = (DEPLOY / "nginx" / "meterpay.conf").read_text()
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"):
        assert f"proxy_set_header {header}" in site
    assert "proxy_pass http://meterpay_web" in site and "server 127.0.0.1:8000" in site
    assert "ssl_certificate " in site and "location = /metrics" in site


@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"), reason="nginx is not installed")
def test_the_nginx_site_passes_nginx_t(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=pay.example.cn"],
                   check=True, capture_output=True, timeout=60)
    site = (DEPLOY / "nginx" / "meterpay.conf").read_text()
    site = site.replace("/etc/ssl/meterpay/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/ssl/meterpay/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}; include {tmp_path}/site.conf; }}\n")
    res = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("pg_dump") and shutil.which("pg_restore")), reason="no pg_dump")
def test_the_backup_script_writes_a_dump_that_restores(tmp_path, pg_only):
    import sqlalchemy as sa

    from tests.core.throwaway import ThrowawayPostgres
    pg = ThrowawayPostgres(tmp_path / "pg").init()
    try:
        src = sa.create_engine(pg.url)
        with src.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (n int)"))
            conn.execute(sa.text("INSERT INTO kept SELECT generate_series(1, 100)"))
        src.dispose()
        backups = tmp_path / "backups"
        env = {**os.environ, "METERPAY_DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "KEEP_DAYS": "30"}
        res = subprocess.run([str(DEPLOY / "meterpay-backup.sh")], env=env, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        dumps = list(backups.glob("meterpay-*.dump"))
        assert len(dumps) == 1 and "backup written" in res.stdout
        admin = sa.create_engine(pg.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE restored"))
        admin.dispose()
        restored_url = pg.url.rsplit("/", 1)[0] + "/restored"
        res = subprocess.run(["pg_restore", "--no-owner", "--dbname", restored_url.replace("+psycopg", ""),
                              str(dumps[0])], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        dst = sa.create_engine(restored_url)
        with dst.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*), sum(n) FROM kept")).one() == (100, 5050)
        dst.dispose()
    finally:
        pg.destroy()

"""Throwaway Redis and PostgreSQL servers for outage tests: started on a free port in a temp
directory, stopped and started again by the test, never the shared ones on 6379/5432."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ThrowawayRedis:
    """``redis-server`` on its own port; ``persistent=True`` keeps its data across a restart
    (append-only file, fsync always), as a production Redis does across a short outage."""

    def __init__(self, workdir: Path, *, persistent: bool = False):
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ThrowawayRedis:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log")]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb in a temp dir, trust auth, its own port and socket
    directory), run as the ``postgres`` user when the tests run as root."""

    def __init__(self, workdir: Path):
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            pytest.skip("PostgreSQL server binaries are not installed")
        self.dir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.user_prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user for initdb")
            self.user_prefix = ["runuser", "-u", "postgres", "--"]
            self.dir.mkdir(parents=True, exist_ok=True)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        # the temp dir's parents must be enterable by the postgres user
        for parent in list(self.dir.parents)[:-1]:
            if str(parent).startswith(("/tmp", os.environ.get("TMPDIR", "/tmp"))):
                try:
                    os.chmod(parent, os.stat(parent).st_mode | 0o711)
                except PermissionError:
                    pass

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/meterpay"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.user_prefix, *args], capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> ThrowawayPostgres:
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        self.start()
        import sqlalchemy as sa
        eng = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                               isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE meterpay"))
        eng.dispose()
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster and wait until its port refuses connections (a loaded machine can take a
        while; a test that thinks the server is down while it still answers proves nothing)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
        import socket
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the throwaway PostgreSQL on port {self.port} still answers after stop")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

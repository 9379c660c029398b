"""Admin test helpers: managers, signing in through the real form (with its CSRF token), and an
outbox that keeps meter commands pending (Flask-level tests check the command rows; the browser
test runs them against the simulator)."""
from __future__ import annotations

import re

import pytest

from tests.admin.browser import _playwright, live_server, page  # noqa: F401 - browser fixtures

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def op_of(html: str) -> str:
    m = re.search(r'name="op" value="([0-9a-f]{32})"', html)
    assert m, "page has no op key"
    return m.group(1)


def hold_command(command_id: int) -> None:
    """Stand-in executor: leave the command pending, as if no worker had picked it up yet."""


@pytest.fixture(autouse=True)
def _fresh_login_counters():
    from admin import security
    security.reset_memory_counters()
    yield
    security.reset_memory_counters()


@pytest.fixture
def outbox_held(monkeypatch):
    import core.supply.commands
    monkeypatch.setattr(core.supply.commands, "EXECUTOR", "tests.admin.conftest.hold_command")


class Manage:
    def __init__(self, session, client):
        self.session = session
        self.client = client

    def manager(self, username: str = "alice", *, sites=(), role: str = "operator", all_sites: bool = False):
        from core.sites.managers import create_manager
        m = create_manager(self.session, username, PASSWORD, sites=[s.name for s in sites], role=role,
                           all_sites=all_sites)
        self.session.commit()
        return m

    def sign_in(self, username: str = "alice", password: str = PASSWORD):
        login_page = self.client.get("/admin/login")
        return self.client.post("/admin/login", data={"username": username, "password": password,
                                                      "csrf_token": csrf_of(login_page.text)})

    def as_manager(self, username: str = "alice", **kw):
        m = self.manager(username, **kw)
        resp = self.sign_in(username)
        assert resp.status_code == 302, resp.text
        return m

    def csrf(self) -> str:
        """The token a page of this session carries (Flask-WTF signs the session's raw token)."""
        return csrf_of(self.client.get("/admin/login").text)

    def post(self, url: str, data: dict | None = None, **kw):
        body = {"csrf_token": self.csrf(), **(data or {})}
        return self.client.post(url, data=body, **kw)


@pytest.fixture
def manage(session, client):
    return Manage(session, client)


def room_at(factory, site, number: str, building: str = "A", floor: str = "1"):
    """factory.room, made safe to call for several buildings in a row (its cached collections go stale)."""
    factory.session.expire_all()
    return factory.room(site, number, building, floor)

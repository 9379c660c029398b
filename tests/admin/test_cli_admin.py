"""``meterpay admin create-manager``."""
from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from core.models import Manager, ManagerRole
from core.sites.managers import verify_password
from meterpay.cli import cli


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_create_manager_for_two_sites(factory, session):
    a, b = factory.site("东方广场"), factory.site("西城公寓")
    session.commit()
    result = run("admin", "create-manager", "--username", "alice", "--password", "s3cret-pass", "--site", "东方广场",
                 "--site", "西城公寓", "--role", "operator")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["username"] == "alice" and out["sites"] == ["东方广场", "西城公寓"]
    session.expire_all()
    m = session.scalar(select(Manager).where(Manager.username == "alice"))
    assert verify_password(m, "s3cret-pass") and "s3cret-pass" not in m.password_hash
    assert {r.site_id for r in session.scalars(select(ManagerRole))} == {a.id, b.id}


def test_create_manager_for_all_sites_with_a_prompted_password(session):
    result = run("admin", "create-manager", "--username", "root", "--all-sites", "--role", "admin",
                 input="long-password\nlong-password\n")
    assert result.exit_code == 0, result.output
    role = session.scalar(select(ManagerRole))
    assert role.site_id is None and role.role == "admin"


def test_bad_input_is_one_line_error_and_creates_nothing(factory, session):
    factory.site("东方广场")
    session.commit()
    cases = [
        ["--username", "bob", "--password", "short", "--site", "东方广场"],
        ["--username", "bob", "--password", "long-enough", "--site", "没有的项目"],
        ["--username", "bob", "--password", "long-enough"],
        ["--username", "bob", "--password", "long-enough", "--site", "东方广场", "--all-sites"],
        ["--username", "", "--password", "long-enough", "--all-sites"],
    ]
    for args in cases:
        result = CliRunner().invoke(cli, ["admin", "create-manager", *args])
        assert result.exit_code != 0
        assert result.output.strip().startswith("error:") and "Traceback" not in result.output
    assert session.scalar(select(Manager)) is None


def test_the_same_username_twice_is_refused(session):
    assert run("admin", "create-manager", "--username", "root", "--password", "long-enough", "--all-sites").exit_code == 0
    result = CliRunner().invoke(cli, ["admin", "create-manager", "--username", "root", "--password", "long-enough",
                                      "--all-sites"])
    assert result.exit_code != 0 and "exists" in result.output

"""One registry declares every setting; `config check` validates all, `config list` masks secrets,
and the README's table is generated from it."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from core import config
from meterpay.cli.base import cli
from meterpay.settings import load_all

ROOT = Path(__file__).resolve().parents[2]
CODE = ("core", "hardware", "bot", "miniapp_api", "admin", "meterpay", "bench")
NOT_SETTINGS = {"METERPAY_TEST_PG_URL", "METERPAY_TEST_REDIS_URL", "METERPAY_CHROMIUM"}


def test_every_variable_the_code_names_is_declared_once():
    load_all()
    declared = {v.name for v in config.variables()}
    named = set()
    for area in CODE:
        for path in (ROOT / area).rglob("*.py"):
            named |= set(re.findall(r"\bMETERPAY_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    prefixes = {"METERPAY_WECHAT_TEMPLATE", "METERPAY_MINIAPP_TEMPLATE"}  # named as a prefix in docstrings
    missing = sorted(n for n in named - declared - NOT_SETTINGS if n not in prefixes)
    assert missing == []


def test_the_readme_table_is_generated_from_the_registry():
    load_all()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == config.markdown(), "README is stale: paste `meterpay config list --markdown` between the markers"


def test_config_check_prints_every_problem_at_once(monkeypatch):
    monkeypatch.setenv("METERPAY_METER_TIMEOUT", "abc")
    monkeypatch.setenv("METERPAY_SMTP_STARTTLS", "maybe")
    monkeypatch.setenv("METERPAY_MAX_AMOUNT", "1.005")
    monkeypatch.setenv("METERPAY_WXPAY_PUBLIC_KEY_ID", "PUB_KEY_ID_1")
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines)
    text = result.stderr
    for name in ("METERPAY_METER_TIMEOUT", "METERPAY_SMTP_STARTTLS", "METERPAY_MAX_AMOUNT",
                 "METERPAY_WXPAY_PUBLIC_KEY_FILE"):
        assert name in text
    assert "more than two decimal places" in text


def test_config_check_passes_on_a_clean_environment(monkeypatch):
    for name in ("METERPAY_METER_TIMEOUT", "METERPAY_WXPAY_PUBLIC_KEY_ID", "METERPAY_WXPAY_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.stderr
    assert result.output.startswith("ok: ")


def test_config_list_masks_secrets(monkeypatch):
    monkeypatch.setenv("METERPAY_WXPAY_APIV3_KEY", "very-secret-apiv3-key-value")
    monkeypatch.setenv("METERPAY_SMS_SIGN", "MyProperty")
    result = CliRunner().invoke(cli, ["config", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert "very-secret" not in result.output
    assert rows["METERPAY_WXPAY_APIV3_KEY"]["secret"] and rows["METERPAY_WXPAY_APIV3_KEY"]["value"].startswith("****")
    assert rows["METERPAY_SMS_SIGN"]["value"] == "MyProperty"
    assert rows["METERPAY_METER_TIMEOUT"]["value"].endswith("(default)")


def test_a_malformed_value_names_its_variable_where_it_is_read(monkeypatch):
    from hardware import settings
    monkeypatch.setenv("METERPAY_METER_TIMEOUT", "soon")
    with pytest.raises(config.ConfigError, match="METERPAY_METER_TIMEOUT: must be a number"):
        settings.reply_timeout()
    monkeypatch.setenv("METERPAY_METER_TIMEOUT", "2.5")
    assert settings.reply_timeout() == 2.5


def test_reading_an_undeclared_variable_is_a_bug():
    with pytest.raises(KeyError, match="not a declared setting"):
        config.get("METERPAY_NO_SUCH_THING")


def test_yuan_settings_use_the_money_rules(monkeypatch):
    monkeypatch.setenv("METERPAY_EMERGENCY_CREDIT", "12.5")
    assert config.get("METERPAY_EMERGENCY_CREDIT") == 1250
    monkeypatch.setenv("METERPAY_EMERGENCY_CREDIT", "12.345")
    with pytest.raises(config.ConfigError, match="METERPAY_EMERGENCY_CREDIT"):
        config.get("METERPAY_EMERGENCY_CREDIT")


def test_config_list_runs_as_a_command():
    out = subprocess.run([sys.executable, "-m", "meterpay.cli", "config", "list"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "METERPAY_DATABASE_URL" in out.stdout


def test_the_area_guides_name_only_declared_variables():
    """docs/*.md may explain a variable at length, but never one the registry does not know."""
    load_all()
    declared = {v.name for v in config.variables()} | NOT_SETTINGS
    unknown = set()
    for path in (ROOT / "docs").glob("*.md"):
        for name in re.findall(r"\bMETERPAY_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")):
            if name not in declared and not any(d.startswith(name + "_") for d in declared):
                unknown.add(f"{path.name}: {name}")
    assert sorted(unknown) == []

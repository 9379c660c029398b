"""Docs that work when followed: no machine's absolute paths, no folder or file that is not in the
checkout, and the demo's commands written the way a fresh checkout runs them (issue 14, item 11)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# pages whose every repository path is checked (the area guides of other areas follow as they are touched)
CHECKED = [ROOT / "README.md", ROOT / "docs" / "DEVELOPING.md", ROOT / "docs" / "miniapp.md", ROOT / "docs" / "admin.md"]
GENERATED = {".venv", "var", ".env", "test-artifacts", ".git"}  # made by make, the demo or git
TOP = {"core", "hardware", "admin", "bot", "miniapp_api", "meterpay", "templates", "tests", "docs", "bench", ".ci"}


def repo_paths(text: str) -> set[str]:
    """Paths in `backticks` and the first column of layout blocks that start with a top folder."""
    found = set(re.findall(r"`(\.?[\w-]+/[\w./-]*)`", text))
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            m = re.match(r"^ *(\.?[\w-]+/[\w./-]*)\s", line)
            if m:
                found.add(m.group(1))
    return {p for p in found if p.split("/")[0] in TOP | GENERATED}


def test_no_absolute_machine_paths():
    offenders = [f"{md.relative_to(ROOT)}: {m}" for md in DOCS
                 for m in re.findall(r"(?<![\w.])/(?:work|root|home|Users)/\S*", md.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_folder_and_file_the_guides_name_is_in_the_checkout():
    missing = [f"{md.relative_to(ROOT)}: {p}" for md in CHECKED for p in sorted(repo_paths(md.read_text(encoding="utf-8")))
               if p.split("/")[0] not in GENERATED and not (ROOT / p).exists()]
    assert missing == []


def test_the_checker_sees_a_missing_folder():
    assert repo_paths("layout:\n```\nbench/   benchmarks\nnosuch/  x\n```\nsee `core/ledger/bulk.py`") == {
        "bench/", "core/ledger/bulk.py"}


def test_the_demo_commands_are_written_as_a_fresh_checkout_runs_them():
    text = (ROOT / "docs" / "miniapp.md").read_text(encoding="utf-8")
    section = text.split("### A recharge by hand in the demo", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    called = re.findall(r"([\w./]*meterpay) [a-z]", block)
    assert called and set(called) == {".venv/bin/meterpay"}
    assert "qr room A101 --site 演示广场" in block and "0101" in block and "13800130101" not in block
    assert "138 0013 0101" in section  # where the last four digits come from
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tries = readme.split("Things to try in the demo:", 1)[1].split("\nRequirements", 1)[0]
    assert not re.findall(r"(?<![/\w])`meterpay ", tries)

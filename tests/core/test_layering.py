"""core is the domain: it never imports a front, hardware, Flask, wechatpy or pymodbus."""
import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
FORBIDDEN = ("flask", "wechatpy", "wechatpayv3", "alipay", "pymodbus", "miniapp_api", "bot", "admin", "hardware",
             "meterpay")


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_core_imports_no_front_hardware_or_framework():
    offenders = []
    for path in CORE.rglob("*.py"):
        for mod in imported_modules(path):
            if mod.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(CORE.parent)} imports {mod}")
    assert offenders == []

"""Arrows point one way.

- core is the domain: it never imports a front, hardware, Flask, wechatpy or pymodbus.
- Inside core, each package imports only the packages below it (``ALLOWED``); the foundation
  modules at the top of core import no package but ``models``. ``core.ledger.money`` is a leaf
  (text and Decimal to fen and back) that anyone may import.
- Only ``core/ledger/`` posts: its internals (``journal``: post, Leg, lock_wallets, reverse) are
  imported by nobody else; ``core.ledger.bulk`` (many consumptions through COPY) only by billing.
- Fronts import public names only (nothing starting with ``_`` from core).
- ``core.reports.rollups`` is a sink: the sums reports read are written where the rows they sum are
  written (the ledger's posting paths, billing), so anyone in core may import it; it imports only
  the foundation and leaves, never a package (so ``core.reports`` above billing makes no cycle).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
FRONTS = ("admin", "bot", "miniapp_api", "hardware", "meterpay")
FORBIDDEN = ("flask", "wechatpy", "wechatpayv3", "alipay", "pymodbus", "miniapp_api", "bot", "admin", "hardware",
             "meterpay")

FOUNDATION = {"config", "errors", "db", "bulk_sql", "utils", "clock", "jobs", "signals", "audit", "migrate", "i18n",
              "models"}
# package -> the core packages it may import (besides the foundation). Nothing else, and no cycles.
ALLOWED = {
    "models": set(),
    "ledger": set(),
    "tariffs": {"ledger"},
    "billing": {"ledger", "tariffs"},
    "alarms": {"ledger"},
    "supply": {"ledger", "alarms"},
    "payments": {"ledger"},
    "sites": {"ledger", "tariffs", "alarms", "billing"},
    "reports": {"ledger", "tariffs", "billing"},
    "bills": {"ledger", "tariffs", "billing", "alarms", "payments"},
    "monthend": {"ledger", "tariffs", "billing", "bills"},
    "batch": {"ledger", "tariffs", "alarms", "supply", "sites"},
}
# Leaves anyone in core may import: they import nothing of core but errors (checked below).
LEAVES = {"core.ledger.money"}
# Sinks anyone in core may import (and call where it writes): they import only the foundation and leaves.
SINKS = {"core.reports.rollups"}
LEDGER_INTERNALS = {"core.ledger.journal"}
LEDGER_BULK = "core.ledger.bulk"


def imports(path: Path):
    """(module, imported names) for every absolute import in the file, function-level ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = tuple(a.name for a in node.names)
            yield node.module, names
            for name in names:  # `from core.ledger import journal` imports the module core.ledger.journal
                yield f"{node.module}.{name}", ()


def in_leaf(module: str) -> bool:
    return any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES)


def in_sink(module: str, names=()) -> bool:
    """A sink, or its package when only sinks are taken from it (``from core.reports import rollups``)."""
    return module in SINKS or bool(names) and all(f"{module}.{n}" in SINKS for n in names)


def area_of(path: Path) -> str:
    rel = path.relative_to(CORE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def core_target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "core" or len(parts) < 2:
        return None
    return parts[1]


def core_files():
    return [p for p in CORE.rglob("*.py") if "migrations" not in p.parts]


def test_core_imports_no_front_hardware_or_framework():
    offenders = []
    for path in CORE.rglob("*.py"):
        for mod, _ in imports(path):
            if mod.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert offenders == []


def test_core_is_a_few_packages_and_at_most_a_dozen_modules():
    modules = [p.name for p in CORE.glob("*.py")]
    assert len(modules) <= 12, modules
    assert set(ALLOWED) <= {p.name for p in CORE.iterdir() if (p / "__init__.py").exists()}


def test_core_packages_import_only_downwards():
    offenders = []
    for path in core_files():
        area = area_of(path)
        for mod, names in imports(path):
            target = core_target(mod)
            if target is None or target == area or target in FOUNDATION or in_leaf(mod) or in_sink(mod, names):
                continue
            if area in FOUNDATION:
                offenders.append(f"{path.relative_to(ROOT)}: foundation module imports {mod}")
            elif target not in ALLOWED.get(area, set()):
                offenders.append(f"{path.relative_to(ROOT)}: {area} may not import {mod}")
    assert offenders == []


def test_leaves_import_nothing_of_core_but_errors():
    for leaf in LEAVES:
        path = ROOT / (leaf.replace(".", "/") + ".py")
        assert all(m == "core.errors" or m.startswith("core.errors.") for m, _ in imports(path) if m.startswith("core"))


def test_sinks_import_only_the_foundation_and_leaves():
    offenders = []
    for sink in SINKS:
        path = ROOT / (sink.replace(".", "/") + ".py")
        for mod, _ in imports(path):
            target = core_target(mod)
            if target is None or target in FOUNDATION or in_leaf(mod):
                continue
            if mod == "core.reports":  # the package itself (its __init__ imports nothing)
                continue
            offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
        package_init = ROOT / (sink.rsplit(".", 1)[0].replace(".", "/")) / "__init__.py"
        assert not [m for m, _ in imports(package_init) if m.startswith("core")], \
            f"{package_init.relative_to(ROOT)} must import nothing of core (the ledger imports {sink})"
    assert offenders == []


def test_only_the_ledger_posts():
    offenders = []
    for path in [*core_files(), *(p for front in FRONTS for p in (ROOT / front).rglob("*.py"))]:
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("core", "ledger"):
            continue
        for mod, _ in imports(path):
            if any(mod == m or mod.startswith(m + ".") for m in LEDGER_INTERNALS):
                offenders.append(f"{rel} imports ledger internals {mod}")
            if mod == LEDGER_BULK and rel.parts[:2] != ("core", "billing"):
                offenders.append(f"{rel} imports {mod} (only billing posts consumptions in bulk)")
    assert offenders == []


def test_fronts_import_public_names_only():
    offenders = []
    for front in FRONTS:
        for path in (ROOT / front).rglob("*.py"):
            for mod, names in imports(path):
                if mod.split(".")[0] != "core":
                    continue
                private = [n for n in names if n.startswith("_")] + [p for p in mod.split(".") if p.startswith("_")]
                if private:
                    offenders.append(f"{path.relative_to(ROOT)} imports {mod}: {private}")
    assert offenders == []


def test_the_layering_rules_catch_an_offender(tmp_path):
    """The walker sees function-level imports and `from core.ledger import journal` alike."""
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from core.ledger import journal\n    import core.sites.accounts\n")
    found = {m for m, _ in imports(sample)}
    assert "core.ledger.journal" in found and "core.sites.accounts" in found

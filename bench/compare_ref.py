"""``python -m bench.compare_ref``: ``meterpay bench billing`` of this checkout against another commit, in one run.

Ingest speed on a shared machine is noisy, so a rate means something only next to another rate
measured under the same load. This script runs ``python -m meterpay.cli bench billing --json`` from
this checkout and from a reference tree of another commit (a temporary detached ``git worktree``
of ``--ref``, removed afterwards, or an existing tree given with ``--ref-dir``), the same sizes,
``--repeat`` times each, interleaved (the order alternates every round: ref, this; this, ref; ...),
each run a fresh process on a fresh scratch database (``METERPAY_DATABASE_URL``'s server). It
prints every run with the load average before it, and:

- the median readings/s of each side, the ratio of the medians and the median of the per-round
  ratios (above 1.00: this checkout ingests faster);
- the median of each side's import time over the raw COPY measured just before it in the same
  process (``ratio_vs_copy``; lower is better);
- the median CPU time of the bench processes (steadier than wall time under load, but it counts
  the whole bench, not only the import, and not the database server);
- with ``--cpu``, as many more runs of the import alone per side (a driver in each tree: the same
  site and CSV, then ``import_csv``; then the same meters' next readings, whose cursors and rollup
  rows exist already), with its CPU time in the process (all threads) and in the database
  server's backends (PostgreSQL on this host), and their ratios (below 1.00: this checkout needs
  less);

and a JSON line last (``--json``: only that).

    METERPAY_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.compare_ref --ref c9ca878 --repeat 5 [--cpu]
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent.parent  # this checkout


def _bench(tree: Path, python: str, args: list[str]) -> dict:
    """One ``meterpay bench billing --json`` run from ``tree`` (its own code: cwd and PYTHONPATH),
    with ``process_cpu_seconds``: the bench process's CPU time (user + system, all threads; the
    site, the CSV, the COPY baseline, the import, the replay and the check, not the server's)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [python, "-m", "meterpay.cli", "bench", "billing", "--json", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise click.ClickException(f"bench billing failed in {tree} (exit {proc.returncode}):\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_cpu_seconds"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)
    return out


# ``--cpu``: the import alone, timed in a process of each tree by this driver (``bench.billing``'s
# site and CSV, ``core.billing.csv_import.import_csv``), with the CPU time of the process (all
# threads) and of the database server's backends of its scratch database (PostgreSQL on this host).
CPU_DRIVER = r"""
import json, os, sys, tempfile, time
import bench.billing as bb
from bench.common import scratch_database
from core.config import get_settings, reset_settings
from core.db import get_engine, reset_engine
from core.migrate import upgrade
meters, per_meter = int(sys.argv[1]), int(sys.argv[2])
url, drop = scratch_database(get_settings().database_url, "compare_cpu")
os.environ["METERPAY_DATABASE_URL"] = url
reset_settings(); reset_engine()

def server_cpu():
    from sqlalchemy import text
    if not url.startswith("postgresql"):
        return {}
    with get_engine().connect() as c:
        pids = c.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars().all()
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out
try:
    upgrade(url)
    bb._mute_listeners()
    from core.billing.csv_import import import_csv
    site = bb._build_site(meters, 7)
    work = tempfile.mkdtemp(prefix="mp-compare-cpu-")
    both = os.path.join(work, "both.csv")
    bb._write_csv(both, site, 2 * per_meter, 7)  # time-major: the first half of the rows comes first
    with open(both, encoding="utf-8") as fh:
        lines = fh.readlines()
    n = meters * per_meter
    paths = [os.path.join(work, "first.csv"), os.path.join(work, "next.csv")]
    for path, part in zip(paths, (lines[1:1 + n], lines[1 + n:])):
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines([lines[0], *part])
    out = {}
    for name, path in zip(("first", "next"), paths):  # a fresh site; then the same meters' next readings
        s0, c0, t0 = server_cpu(), os.times(), time.perf_counter()
        with open(path, "rb") as fh:
            summary = import_csv(fh)
        wall, c1, s1 = time.perf_counter() - t0, os.times(), server_cpu()
        out[name] = {"import_seconds": round(wall, 3), "readings_per_second": round(n / wall),
                     "import_cpu_seconds": round(c1.user - c0.user + c1.system - c0.system, 3),
                     "server_cpu_seconds": round(sum(v - s0.get(p, 0.0) for p, v in s1.items()), 3),
                     "billed_fen": summary.billed_fen}
    for path in (both, *paths):
        os.remove(path)
    print(json.dumps({"readings": n, **out}))
finally:
    drop()
"""


def _cpu_run(tree: Path, python: str, meters: int, readings: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([python, "-c", CPU_DRIVER, str(meters), str(readings)], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise click.ClickException(f"the CPU driver failed in {tree} (exit {proc.returncode}):\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_cpu(ref_tree: Path, head_tree: Path, *, repeat: int, meters: int, readings: int, python: str,
                say=lambda msg: None) -> dict:
    """``--cpu``: the import alone, interleaved as ``compare``: ``first`` on a fresh site, then
    ``next``, the same meters' next readings (every cursor, and every rollup row of the day, there
    already). Medians of each one's rate and CPU (process and server) per side, and their ratios
    (head / ref: below 1, the head needs less CPU)."""
    runs: list[dict] = []
    for k in range(repeat):
        order = [("ref", ref_tree), ("head", head_tree)]
        if k % 2:
            order.reverse()
        for side, tree in order:
            load = os.getloadavg()
            res = _cpu_run(tree, python, meters, readings)
            runs.append({"round": k + 1, "side": side, "load": [round(x, 2) for x in load], **res})
            say(f"round {k + 1} {side:4s}: " + "; ".join(
                f"{name} {r['import_seconds']} s ({r['readings_per_second']:,}/s), CPU {r['import_cpu_seconds']} s "
                f"+ {r['server_cpu_seconds']} s in the server" for name, r in ((n, res[n]) for n in ("first", "next")))
                + f"; load {' '.join(f'{x:.2f}' for x in load)}")
    out: dict = {"runs": runs, "same_billed_amount": all(
        len({r[name]["billed_fen"] for r in runs}) == 1 for name in ("first", "next"))}
    for name in ("first", "next"):
        def med(side: str, key: str, name: str = name) -> float:
            return statistics.median(r[name][key] for r in runs if r["side"] == side)
        part: dict = {}
        for key in ("readings_per_second", "import_cpu_seconds", "server_cpu_seconds"):
            part[key] = {"ref": med("ref", key), "head": med("head", key),
                         "ratio": round(med("head", key) / med("ref", key), 3) if med("ref", key) else None}
        total = {side: med(side, "import_cpu_seconds") + med(side, "server_cpu_seconds") for side in ("ref", "head")}
        part["total_cpu_seconds"] = {"ref": round(total["ref"], 3), "head": round(total["head"], 3),
                                     "ratio": round(total["head"] / total["ref"], 3) if total["ref"] else None}
        out[name] = part
    return out


def _imports_from(tree: Path, python: str) -> str:
    """Where ``core`` is imported from when run from ``tree`` (it must be ``tree`` itself)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([python, "-c", "import core; print(core.__file__)"], cwd=tree, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _commit(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return (out.stdout.strip() or "?") + ("+changes" if dirty else "")


def _median_of(runs: list[dict], side: str, key: str) -> float | None:
    values = [r[key] for r in runs if r["side"] == side and r[key] is not None]
    return round(statistics.median(values), 2) if values else None


def compare(ref_tree: Path, head_tree: Path, *, repeat: int, args: list[str], python: str,
            say=lambda msg: None) -> dict:
    """Interleaved runs of both trees; returns the runs, the medians and the ratios (head / ref)."""
    for tree in (ref_tree, head_tree):
        origin = _imports_from(tree, python)
        if not origin.startswith(str(tree.resolve())):
            raise click.ClickException(f"running from {tree} imports core from {origin}")
    runs: list[dict] = []
    for k in range(repeat):
        order = [("ref", ref_tree), ("head", head_tree)]
        if k % 2:
            order.reverse()
        for side, tree in order:
            load = os.getloadavg()
            res = _bench(tree, python, args)
            run = {"round": k + 1, "side": side, "load": [round(x, 2) for x in load],
                   "readings_per_second": res["readings_per_second"], "import_seconds": res["import_seconds"],
                   "ratio_vs_copy": res["ratio_vs_copy"], "process_cpu_seconds": res["process_cpu_seconds"],
                   "ledger_problems": res["ledger_problems"],
                   "billed_amount": res["billed_amount"]}
            runs.append(run)
            say(f"round {k + 1} {side:4s}: {run['readings_per_second']:>9,} readings/s, "
                f"{run['ratio_vs_copy']}x a raw COPY, bench process CPU {run['process_cpu_seconds']} s, "
                f"load {' '.join(f'{x:.2f}' for x in load)}")
    rate = {side: [r["readings_per_second"] for r in runs if r["side"] == side] for side in ("ref", "head")}
    rounds = [next(r for r in runs if r["round"] == k + 1 and r["side"] == "head")["readings_per_second"]
              / next(r for r in runs if r["round"] == k + 1 and r["side"] == "ref")["readings_per_second"]
              for k in range(repeat)]
    amounts = {r["billed_amount"] for r in runs}
    cpu = {side: [r["process_cpu_seconds"] for r in runs if r["side"] == side] for side in ("ref", "head")}
    return {
        "ref": _commit(ref_tree), "head": _commit(head_tree), "args": args, "repeat": repeat,
        "median_ref": round(statistics.median(rate["ref"])), "median_head": round(statistics.median(rate["head"])),
        "ratio_of_medians": round(statistics.median(rate["head"]) / statistics.median(rate["ref"]), 3),
        "median_round_ratio": round(statistics.median(rounds), 3),
        "round_ratios": [round(x, 3) for x in rounds],
        "median_vs_copy_ref": _median_of(runs, "ref", "ratio_vs_copy"),
        "median_vs_copy_head": _median_of(runs, "head", "ratio_vs_copy"),
        "median_cpu_ref": round(statistics.median(cpu["ref"]), 2),
        "median_cpu_head": round(statistics.median(cpu["head"]), 2),
        "same_billed_amount": len(amounts) == 1, "ledger_problems": sum(r["ledger_problems"] for r in runs),
        "runs": runs,
    }


@click.command()
@click.option("--ref", default="c9ca878", show_default=True, help="the commit to compare with (a temporary worktree)")
@click.option("--ref-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="an existing checkout of the reference instead of --ref")
@click.option("--head-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=HERE,
              help="the checkout to measure (default: this one)")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="runs of each side")
@click.option("--meters", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--readings", type=click.IntRange(min=2), default=40, show_default=True, help="readings per meter")
@click.option("--python", "python", default=sys.executable, show_default=True,
              help="the interpreter (a virtualenv with meterpay's dependencies)")
@click.option("--cpu", "cpu", is_flag=True,
              help="also time the import alone in each tree (as many runs, interleaved) with its CPU time, the "
                   "process's and the database server's: steadier than readings/s when the machine is busy")
@click.option("--json", "as_json", is_flag=True, help="print only the JSON result")
def main(ref: str, ref_dir: Path | None, head_dir: Path, repeat: int, meters: int, readings: int, python: str,
         cpu: bool, as_json: bool) -> None:
    """Compare ``meterpay bench billing`` of this checkout with --ref (interleaved, medians, ratio)."""
    say = (lambda msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    args = ["--meters", str(meters), "--readings", str(readings)]
    tmp = None
    if ref_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="mp-compare-ref-"))
        ref_dir = tmp / "ref"
        subprocess.run(["git", "-C", str(head_dir), "worktree", "add", "--detach", str(ref_dir), ref], check=True,
                       capture_output=True)
    try:
        say(f"this checkout {head_dir} ({_commit(head_dir)}) against {ref_dir} ({_commit(ref_dir)}); "
            f"bench billing {' '.join(args)}, {repeat} runs each, interleaved")
        t0 = time.perf_counter()
        out = compare(ref_dir, head_dir, repeat=repeat, args=args, python=python, say=say)
        if cpu:
            say("the import alone, with its CPU time:")
            out["cpu"] = compare_cpu(ref_dir, head_dir, repeat=repeat, meters=meters, readings=readings,
                                     python=python, say=say)
            for name in ("first", "next"):
                c = out["cpu"][name]
                say(f"{name}, medians ref / head: {c['readings_per_second']['ref']:,.0f} / "
                    f"{c['readings_per_second']['head']:,.0f} readings/s (x{c['readings_per_second']['ratio']}); "
                    f"process CPU {c['import_cpu_seconds']['ref']} / {c['import_cpu_seconds']['head']} s "
                    f"(x{c['import_cpu_seconds']['ratio']}); server CPU {c['server_cpu_seconds']['ref']} / "
                    f"{c['server_cpu_seconds']['head']} s (x{c['server_cpu_seconds']['ratio']}); both "
                    f"{c['total_cpu_seconds']['ref']} / {c['total_cpu_seconds']['head']} s "
                    f"(x{c['total_cpu_seconds']['ratio']})")
        out["seconds"] = round(time.perf_counter() - t0, 1)
        say(f"median readings/s: ref {out['median_ref']:,}, head {out['median_head']:,}; "
            f"ratio of medians {out['ratio_of_medians']:.3f}, median of round ratios {out['median_round_ratio']:.3f}; "
            f"median bench process CPU: ref {out['median_cpu_ref']} s, head {out['median_cpu_head']} s; "
            f"median import time over the raw COPY's (same process, lower is better): ref "
            f"{out['median_vs_copy_ref']}x, head {out['median_vs_copy_head']}x")
        click.echo(json.dumps(out))
        if out["ledger_problems"] or not out["same_billed_amount"] or not out.get("cpu", {}).get(
                "same_billed_amount", True):
            raise SystemExit(1)
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(head_dir), "worktree", "remove", "--force", str(ref_dir)], check=False,
                           capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``python -m bench.compare_ref``: ``meterpay bench billing`` of this checkout against another commit, in one run.

Ingest speed on a shared machine is noisy, so a rate means something only next to another rate
measured under the same load. This script runs ``python -m meterpay.cli bench billing --json`` from
this checkout and from a reference tree of another commit (a temporary detached ``git worktree``
of ``--ref``, removed afterwards, or an existing tree given with ``--ref-dir``), the same sizes,
``--repeat`` times each, interleaved (the order alternates every round: ref, this; this, ref; ...),
each run a fresh process on a fresh scratch database (``METERPAY_DATABASE_URL``'s server). It
prints every run with the load average before it, the median readings/s of each side, the ratio of
the medians and the median of the per-round ratios, and a JSON line last (``--json``: only that).

    METERPAY_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.compare_ref --ref c9ca878 --repeat 5

A ratio above 1.00 means this checkout ingests faster than the reference.
"""
from __future__ import annotations

import json
import os
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
    """One ``meterpay bench billing --json`` run from ``tree`` (its own code: cwd and PYTHONPATH)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [python, "-m", "meterpay.cli", "bench", "billing", "--json", *args]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise click.ClickException(f"bench billing failed in {tree} (exit {proc.returncode}):\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
                   "ratio_vs_copy": res["ratio_vs_copy"], "ledger_problems": res["ledger_problems"],
                   "billed_amount": res["billed_amount"]}
            runs.append(run)
            say(f"round {k + 1} {side:4s}: {run['readings_per_second']:>9,} readings/s, "
                f"{run['ratio_vs_copy']}x a raw COPY, load {' '.join(f'{x:.2f}' for x in load)}")
    rate = {side: [r["readings_per_second"] for r in runs if r["side"] == side] for side in ("ref", "head")}
    rounds = [next(r for r in runs if r["round"] == k + 1 and r["side"] == "head")["readings_per_second"]
              / next(r for r in runs if r["round"] == k + 1 and r["side"] == "ref")["readings_per_second"]
              for k in range(repeat)]
    amounts = {r["billed_amount"] for r in runs}
    return {
        "ref": _commit(ref_tree), "head": _commit(head_tree), "args": args, "repeat": repeat,
        "median_ref": round(statistics.median(rate["ref"])), "median_head": round(statistics.median(rate["head"])),
        "ratio_of_medians": round(statistics.median(rate["head"]) / statistics.median(rate["ref"]), 3),
        "median_round_ratio": round(statistics.median(rounds), 3),
        "round_ratios": [round(x, 3) for x in rounds],
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
@click.option("--json", "as_json", is_flag=True, help="print only the JSON result")
def main(ref: str, ref_dir: Path | None, head_dir: Path, repeat: int, meters: int, readings: int, python: str,
         as_json: bool) -> None:
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
        out["seconds"] = round(time.perf_counter() - t0, 1)
        say(f"median readings/s: ref {out['median_ref']:,}, head {out['median_head']:,}; "
            f"ratio of medians {out['ratio_of_medians']:.3f}, median of round ratios {out['median_round_ratio']:.3f}")
        click.echo(json.dumps(out))
        if out["ledger_problems"] or not out["same_billed_amount"]:
            raise SystemExit(1)
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(head_dir), "worktree", "remove", "--force", str(ref_dir)], check=False,
                           capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

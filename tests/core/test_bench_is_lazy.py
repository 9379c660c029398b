"""Benchmarks live in the ``bench`` package and load only when ``meterpay bench <name>`` runs."""
import subprocess
import sys

from click.testing import CliRunner


def test_meterpay_commands_do_not_import_benchmark_code():
    code = ("import sys, meterpay.cli; from meterpay.cli.base import cli; "
            "print(sorted(m for m in sys.modules if m == 'bench' or m.startswith('bench.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bench_lists_every_benchmark_and_loads_one_on_demand():
    from meterpay.cli.base import cli
    from meterpay.cli.bench import BENCHMARKS
    listed = CliRunner().invoke(cli, ["bench", "--help"])
    assert listed.exit_code == 0
    for name in BENCHMARKS:
        assert name in listed.output
    shown = CliRunner().invoke(cli, ["bench", "poll", "--help"])
    assert shown.exit_code == 0 and "--gateways" in shown.output
    assert CliRunner().invoke(cli, ["bench", "nosuch"]).exit_code != 0

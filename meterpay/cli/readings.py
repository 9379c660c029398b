"""``meterpay readings import FILE.csv``: ingest and bill meter readings from a CSV file."""
from __future__ import annotations

import os
import sys

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json


@cli.group()
def readings() -> None:
    """Meter readings: import them and bill the usage."""


@readings.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="rows per transaction (default METERPAY_IMPORT_CHUNK, else 250000 on PostgreSQL and 20000 on "
                   "SQLite; a row with registers counts as three)")
@click.option("--strict", is_flag=True, help="exit 1 if any row was bad (the good rows still go in)")
@friendly_errors
def import_cmd(path: str, chunk_size: int | None, strict: bool) -> None:
    """Import FILE.csv (meter_serial,taken_at,total[,sharp,peak,flat,valley,deep_valley]).

    Bad rows are reported on stderr with their line numbers; the last line on stdout is a JSON
    summary {"accepted", "duplicates", "anomalies", "billed_amount"}.
    """
    from core.billing.csv_import import default_chunk, import_csv
    chunk = chunk_size or default_chunk()
    try:
        fh = open(path, "rb")
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    with fh:
        size = os.fstat(fh.fileno()).st_size
        errors = lambda msg: click.echo(f"{path}: {msg}", err=True)  # noqa: E731
        if sys.stderr.isatty():
            with click.progressbar(length=size, label="importing", file=sys.stderr) as bar:
                summary = import_csv(fh, chunk_size=chunk, on_bytes=bar.update, on_error=errors)
        else:
            summary = import_csv(fh, chunk_size=chunk, on_error=errors)
    print_json(summary.as_json())
    if strict and summary.errors:
        sys.exit(1)

"""The ``meterpay`` click group and the conventions every command follows.

Commands live in small modules beside this one (one per area: ledger.py, tariff.py, meter.py,
...); ``meterpay.cli`` imports every module in this folder, so adding a command file is enough.
Domain errors print one line ``error: ...`` on stderr and exit 2; never a traceback.
"""
from __future__ import annotations

import functools
import json
import sys

import click

from core.errors import MeterpayError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """meterpay: prepaid electricity and water for property managers."""
    click.get_current_context().call_on_close(_finish_in_process_jobs)


def _finish_in_process_jobs() -> None:
    """Without Redis, a command's after-commit jobs (alarms, supply control after `readings import`)
    run on this process's thread pool: let them finish before the interpreter shuts down, which would
    refuse the jobs they chain ("cannot schedule new futures after interpreter shutdown")."""
    jobs = sys.modules.get("core.jobs")
    if jobs is not None and getattr(jobs, "_runner", None) is not None:
        if not jobs.wait_idle(120):
            click.echo("warning: background jobs still running at exit", err=True)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Turn domain and expected I/O errors into one line on stderr and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MeterpayError as exc:
            fail(exc.message)
        except (OSError, json.JSONDecodeError, ValueError) as exc:
            fail(str(exc) or type(exc).__name__)
    return wrapper


def print_json(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))

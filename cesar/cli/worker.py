"""`cesar worker`: claim queued jobs and transcribe them (``python -m cesar_worker`` is the same process as
`cesar serve` starts it, configured from the environment alone).

Only Click is imported at start-up; the worker, the job store and the engine load when the command runs.
"""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from cesar.cli.options import (
    COMMAND_SETTINGS,
    batch_size_option,
    compute_type_option,
    db_option,
    device_option,
    log_level_option,
    option,
    verbose_option,
)
from cesar_common.exits import one_line_errors

__all__ = ["worker"]


@click.command(context_settings=COMMAND_SETTINGS)
@db_option
@option(
    "-m",
    "--model",
    help="Default model; given on the command line, it is also loaded at start (like --preload).",
)
@device_option
@compute_type_option
@option(
    "--threads",
    type=click.IntRange(min=0),
    help="CPU threads per transcription (0: faster-whisper's default).",
)
@batch_size_option
@option("--once", is_flag=True, help="Process the jobs already queued, then exit.")
@option("--worker-id", metavar="ID", help="Name in the workers table and job rows. Default: host:pid.")
@option("--preload", is_flag=True, help="Load the default model before taking the first job.")
@log_level_option("faster-whisper's, Alembic's and each webhook request's messages")
@verbose_option("Show tracebacks on errors.")
@click.pass_context
def worker(
    ctx: click.Context,
    database_url: str | None,
    model: str | None,
    device: str | None,
    compute_type: str | None,
    threads: int | None,
    batch_size: int | None,
    once: bool,
    worker_id: str | None,
    preload: bool,
    log_level: str | None,
    verbose: bool,
) -> None:
    """Claim queued jobs from the database, one at a time, and transcribe them.

    Run as many workers as you like, on this host or others (with PostgreSQL). SIGTERM or Ctrl-C stops
    claiming; the running job may finish within CESAR_SHUTDOWN_GRACE_SECONDS, else it is handed back.
    """
    model_given = ctx.get_parameter_source("model") == ParameterSource.COMMANDLINE
    with one_line_errors(verbose=verbose):
        from cesar_common.settings import get_settings
        from cesar_worker.worker import run_process

        settings = get_settings(
            database_url=database_url,
            model=model,
            device=device,
            compute_type=compute_type,
            threads=threads,
            batch_size=batch_size,
            log_level=log_level,
        )
        code = run_process(settings, once=once, worker_id=worker_id, preload=preload or model_given)
    sys.exit(code)

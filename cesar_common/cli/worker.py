"""`cesar worker` (also `python -m cesar_worker`): claim queued jobs and transcribe them.

Only Click is imported at start-up; the worker, the job store and the engine load when the command runs.
"""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from cesar_common.cli._common import (
    batch_size_option,
    cli_errors,
    compute_type_option,
    db_option,
    device_option,
    log_level_option,
    settings_from,
)


@click.command()
@db_option
@click.option(
    "-m",
    "--model",
    envvar="CESAR_MODEL",
    show_envvar=True,
    help="Default model; given on the command line, it is also loaded at start (like --preload).",
)
@device_option
@compute_type_option
@click.option(
    "--threads",
    envvar="CESAR_THREADS",
    show_envvar=True,
    type=click.IntRange(min=0),
    help="CPU threads per transcription (0: faster-whisper's default).",
)
@batch_size_option
@click.option("--once", is_flag=True, help="Process the jobs already queued, then exit.")
@click.option("--worker-id", metavar="ID", help="Name in the workers table and job rows. Default: host:pid.")
@click.option("--preload", is_flag=True, help="Load the default model before taking the first job.")
@log_level_option
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
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
    with cli_errors(verbose=verbose):
        from cesar_common.logs import configure_logging
        from cesar_common.parentwatch import watch_parent
        from cesar_worker.worker import quiet_library_logs, run_worker

        settings = settings_from(
            database_url=database_url,
            model=model,
            device=device,
            compute_type=compute_type,
            threads=threads,
            batch_size=batch_size,
            log_level=log_level,
        )
        configure_logging(settings.log_level, name="worker")
        quiet_library_logs(settings.log_level)
        watch_parent()  # under `cesar serve`: a SIGTERM to ourselves if the supervisor dies
        code = run_worker(settings, once=once, worker_id=worker_id, preload=preload or model_given)
    sys.exit(code)

"""`cesar serve`: the API and its workers on this machine, in one command."""

from __future__ import annotations

import sys

import click

from cesar_common.cli._common import (
    cli_errors,
    compute_type_option,
    db_option,
    device_option,
    host_option,
    log_level_option,
    port_option,
    settings_from,
)


class _WorkersType(click.ParamType):
    name = "auto|N"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if text == "auto" or (text.isdigit() and int(text) >= 0):
            return text
        self.fail(f"{value!r} is not 'auto' or a number of workers (0 or more)", param, ctx)


@click.command(context_settings={"show_default": False})
@host_option
@port_option
@click.option(
    "--workers",
    envvar="CESAR_WORKERS",
    show_envvar=True,
    type=_WorkersType(),
    help="Worker processes that transcribe: a number, 0 for the API alone, or auto: one per CPU "
    "core / --threads (capped so their models fit in 70% of free memory), or one per GPU. "
    "[default: auto]",
)
@click.option(
    "--threads",
    envvar="CESAR_THREADS",
    show_envvar=True,
    type=click.IntRange(min=0),
    help="CPU threads per worker (0: 1 with --workers auto, else the cores shared among the "
    "workers). [default: 0]",
)
@db_option
@click.option(
    "--model",
    envvar="CESAR_MODEL",
    show_envvar=True,
    metavar="NAME",
    help="Default Whisper model: tiny.en (bundled, works offline), another faster-whisper name "
    "(downloaded once) or a CTranslate2 model directory. [default: tiny.en]",
)
@device_option
@compute_type_option
@click.option(
    "--no-migrate",
    is_flag=True,
    default=False,
    help="Do not upgrade the database schema; only check that it is current (for deployments "
    "that run `alembic upgrade head` as a release step).",
)
@log_level_option
@click.option("--verbose", is_flag=True, default=False, help="Show a traceback when serve fails.")
def serve(
    host: str | None,
    port: int | None,
    workers: str | None,
    threads: int | None,
    database_url: str | None,
    model: str | None,
    device: str | None,
    compute_type: str | None,
    no_migrate: bool,
    log_level: str | None,
    verbose: bool,
) -> None:
    """Run the HTTP API and the transcription workers on this machine.

    Upgrades the job database, starts the API and the workers as child processes, prints where the API
    and its docs are, and restarts any of them that dies. Ctrl-C (or SIGTERM) stops the API and lets the
    workers finish or hand back their jobs; a second Ctrl-C stops everything at once.

    Every other setting (CESAR_API_KEY, CESAR_LEASE_SECONDS, ...) is read from the environment.
    """
    with cli_errors(verbose=verbose):
        from cesar_common.logs import configure_logging
        from cesar_common.supervisor import run_serve

        settings = settings_from(
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            database_url=database_url,
            model=model,
            device=device,
            compute_type=compute_type,
            log_level=log_level,
        )
        configure_logging(settings.log_level, name="serve")
        code = run_serve(settings, migrate=not no_migrate)
    sys.exit(code)

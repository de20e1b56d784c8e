"""`cesar serve`: the API and its workers on this machine, in one command."""

from __future__ import annotations

import sys

import click

from cesar.cli.options import (
    COMMAND_SETTINGS,
    compute_type_option,
    db_option,
    device_option,
    host_option,
    insecure_option,
    log_level_option,
    option,
    port_option,
    verbose_option,
)
from cesar_common.exits import one_line_errors
from cesar_common.text import plain_number

__all__ = ["serve"]


def _workers(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text == "auto" or plain_number(text) is not None:
        return text
    raise click.BadParameter(f"{value!r} is not 'auto' or a number of workers (0 or more)")


@click.command(context_settings=COMMAND_SETTINGS)
@host_option
@port_option
@insecure_option
@option(
    "--workers",
    metavar="auto|N",
    callback=_workers,
    help="Worker processes that transcribe: a number, 0 for the API alone, or auto: one per CPU "
    "core / --threads (capped so their models fit in 70% of free memory), or one per GPU. "
    "[default: auto]",
)
@option(
    "--threads",
    type=click.IntRange(min=0),
    help="CPU threads per worker (0: 1 with --workers auto, else the cores shared among the "
    "workers). [default: 0]",
)
@db_option
@option(
    "--model",
    metavar="NAME",
    help="Default Whisper model: tiny.en (bundled, works offline), another faster-whisper name "
    "(downloaded once) or a CTranslate2 model directory. [default: tiny.en]",
)
@device_option
@compute_type_option
@option(
    "--no-migrate",
    is_flag=True,
    default=False,
    help="Do not upgrade the database schema; only check that it is current (for deployments "
    "that run `cesar db upgrade` as a release step).",
)
@log_level_option("every API request, and the workers' libraries")
@verbose_option("Show a traceback when serve fails.")
def serve(
    host: str | None,
    port: int | None,
    insecure: bool,
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
    with one_line_errors(verbose=verbose):
        from cesar.supervisor import run_serve
        from cesar_common.logs import configure_logging
        from cesar_common.settings import get_settings

        settings = get_settings(
            host=host,
            port=port,
            insecure=insecure or None,  # unset: CESAR_INSECURE decides
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

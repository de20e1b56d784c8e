"""`cesar serve`: the API and its workers on this machine, in one command."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from cesar_common.cli._common import COMPUTE_TYPES, DEVICE_NAMES, LOG_LEVELS, cli_errors

if TYPE_CHECKING:
    from cesar_common.settings import Settings


class _WorkersType(click.ParamType):
    name = "auto|N"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if text == "auto" or (text.isdigit() and int(text) >= 0):
            return text
        self.fail(f"{value!r} is not 'auto' or a number of workers (0 or more)", param, ctx)


@click.command(context_settings={"show_default": False})
@click.option(
    "--host",
    envvar="CESAR_HOST",
    show_envvar=True,
    metavar="ADDRESS",
    help="Address the API listens on. [default: 127.0.0.1, this machine only; 0.0.0.0 for every "
    "interface, then also set CESAR_API_KEY]",
)
@click.option(
    "--port",
    envvar="CESAR_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    help="Port the API listens on (0: any free port). [default: 5000]",
)
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
@click.option(
    "--db",
    "database_url",
    envvar="CESAR_DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    help="Job database: sqlite:///path/to/cesar.db or postgresql+psycopg://user@host/db. "
    "[default: a SQLite file in ~/.local/share/cesar]",
)
@click.option(
    "--model",
    envvar="CESAR_MODEL",
    show_envvar=True,
    metavar="NAME",
    help="Default Whisper model: tiny.en (bundled, works offline), another faster-whisper name "
    "(downloaded once) or a CTranslate2 model directory. [default: tiny.en]",
)
@click.option(
    "--device",
    envvar="CESAR_DEVICE",
    show_envvar=True,
    type=click.Choice(DEVICE_NAMES, case_sensitive=False),
    help="Where the workers run Whisper: auto uses CUDA when a GPU is visible. [default: auto]",
)
@click.option(
    "--compute-type",
    envvar="CESAR_COMPUTE_TYPE",
    show_envvar=True,
    type=click.Choice(COMPUTE_TYPES, case_sensitive=False),
    metavar="TYPE",
    help="CTranslate2 compute type: auto (int8 on CPU, float16 on CUDA), int8, int8_float16, "
    "int8_float32, int8_bfloat16, int16, float16, bfloat16, float32 or default (as the "
    "model was converted). [default: auto]",
)
@click.option(
    "--no-migrate",
    is_flag=True,
    default=False,
    help="Do not upgrade the database schema; only check that it is current (for deployments "
    "that run `alembic upgrade head` as a release step).",
)
@click.option(
    "--log-level",
    envvar="CESAR_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log level of serve, the API and the workers. [default: info]",
)
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

        settings = _settings(
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


def _settings(**overrides: object) -> Settings:
    """The settings with the given options on top; a bad value (option or variable) as one clear line."""
    from pydantic import ValidationError

    from cesar_common.errors import InvalidInputError
    from cesar_common.settings import get_settings

    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "_".join(str(part) for part in error["loc"]).upper()
        raise InvalidInputError(f"invalid CESAR_{name}: {error['msg']}") from None

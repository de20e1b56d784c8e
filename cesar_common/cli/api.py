"""`cesar api`: the HTTP API alone, without workers (they run elsewhere: `cesar worker`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cesar_common.cli._common import LOG_LEVELS, cli_errors

if TYPE_CHECKING:
    from cesar_common.settings import Settings


@click.command(context_settings={"show_default": False})
@click.option(
    "--host",
    envvar="CESAR_HOST",
    show_envvar=True,
    metavar="ADDRESS",
    help="Address to listen on. [default: 127.0.0.1; 0.0.0.0 for every interface, then also set "
    "CESAR_API_KEY]",
)
@click.option(
    "--port",
    envvar="CESAR_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on. [default: 5000]",
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
    "--log-level",
    envvar="CESAR_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log level (debug also logs every request). [default: info]",
)
@click.option("--verbose", is_flag=True, default=False, help="Show a traceback when the API fails to start.")
def api(
    host: str | None, port: int | None, database_url: str | None, log_level: str | None, verbose: bool
) -> None:
    """Run the HTTP API alone (docs at /docs).

    The database must already be at the current schema (`alembic upgrade head`, or start `cesar serve`
    once); otherwise the API refuses to start. Every other setting (CESAR_API_KEY, CESAR_MODELS,
    CESAR_MAX_UPLOAD_MB, ...) is read from the environment.
    """
    with cli_errors(verbose=verbose):
        from cesar_api.server import serve

        serve(_settings(host=host, port=port, database_url=database_url, log_level=log_level))


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

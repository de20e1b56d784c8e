"""`cesar api`: the HTTP API alone, without workers (they run elsewhere: `cesar worker`)."""

from __future__ import annotations

import click

from cesar_common.cli._common import (
    cli_errors,
    db_option,
    host_option,
    log_level_option,
    port_option,
    settings_from,
)


@click.command(context_settings={"show_default": False})
@host_option
@port_option
@db_option
@log_level_option
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

        serve(settings_from(host=host, port=port, database_url=database_url, log_level=log_level))

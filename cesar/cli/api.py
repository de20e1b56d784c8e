"""`cesar api`: the HTTP API alone, without workers (they run elsewhere: `cesar worker`)."""

from __future__ import annotations

import click

from cesar.cli.options import (
    COMMAND_SETTINGS,
    db_option,
    host_option,
    insecure_option,
    log_level_option,
    port_option,
    verbose_option,
)
from cesar_common.exits import one_line_errors

__all__ = ["api"]


@click.command(context_settings=COMMAND_SETTINGS)
@host_option
@port_option
@insecure_option
@db_option
@log_level_option("every request")
@verbose_option("Show a traceback when the API fails to start.")
def api(
    host: str | None,
    port: int | None,
    insecure: bool,
    database_url: str | None,
    log_level: str | None,
    verbose: bool,
) -> None:
    """Run the HTTP API alone (docs at /docs).

    The database must already be at the current schema (`cesar db upgrade`, or start `cesar serve`
    once); otherwise the API refuses to start. Every other setting (CESAR_API_KEY, CESAR_MODELS,
    CESAR_MAX_UPLOAD_MB, ...) is read from the environment.
    """
    with one_line_errors(verbose=verbose):
        from cesar_api.server import serve
        from cesar_common.settings import get_settings

        settings = get_settings(
            host=host,
            port=port,
            insecure=insecure or None,  # unset: CESAR_INSECURE decides
            database_url=database_url,
            log_level=log_level,
        )
        serve(settings)

"""`cesar db`: the job database's schema (`cesar db upgrade`, `cesar db current`)."""

from __future__ import annotations

import click

from cesar.cli.options import COMMAND_SETTINGS, db_option, verbose_option
from cesar_common.exits import one_line_errors

__all__ = ["db"]


@click.group(context_settings=COMMAND_SETTINGS)
def db() -> None:
    """The job database's schema: upgrade it, or show where it stands.

    Works from an installed Cesar in any directory (the migrations ship with it). `cesar serve`
    upgrades the database itself; run `cesar db upgrade` once per deploy where the API and the
    workers start on their own (`cesar api`, `cesar worker`, several hosts).
    """


@db.command(context_settings=COMMAND_SETTINGS)
@db_option
@verbose_option("Show a traceback on failure.")
def upgrade(database_url: str | None, verbose: bool) -> None:
    """Upgrade the job database to this version's schema (creating it if it is empty)."""
    with one_line_errors(verbose=verbose):
        from cesar.schema import upgrade_database

        click.echo(upgrade_database(database_url))


@db.command(context_settings=COMMAND_SETTINGS)
@db_option
@verbose_option("Show a traceback on failure.")
def current(database_url: str | None, verbose: bool) -> None:
    """Show the job database's schema revision and whether it is up to date (exit 1 when behind)."""
    with one_line_errors(verbose=verbose):
        from cesar.schema import describe_database

        line, up_to_date = describe_database(database_url)
        click.echo(line)
    if not up_to_date:
        raise SystemExit(1)

"""`cesar jobs`: look after the job database by hand (`cesar jobs purge`)."""

from __future__ import annotations

import click

from cesar.cli.options import COMMAND_SETTINGS, db_option, option, verbose_option
from cesar_common.db.records import FINAL_STATUSES
from cesar_common.exits import one_line_errors

__all__ = ["jobs"]


@click.group(context_settings=COMMAND_SETTINGS)
def jobs() -> None:
    """Manage the job database directly (--db; not through a server: that is `cesar remote`)."""


@jobs.command(context_settings=COMMAND_SETTINGS)
@option(
    "--older-than",
    required=True,
    metavar="AGE",
    help="Remove jobs that finished longer ago than this: 90m, 12h, 7d, 2w.",
)
@option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(sorted(status.value for status in FINAL_STATUSES), case_sensitive=False),
    help="Only jobs that ended with this status (repeat for several). [default: every finished job]",
)
@db_option
@verbose_option("Show a traceback on failure.")
def purge(older_than: str, statuses: tuple[str, ...], database_url: str | None, verbose: bool) -> None:
    """Delete finished jobs older than AGE, with their audio and results.

    Queued and processing jobs are never removed. Workers do the same on their own when
    CESAR_RETENTION_DAYS is set.
    """
    with one_line_errors(verbose=verbose):
        from cesar.purge import purge_jobs, removed_message
        from cesar_common.settings import get_settings

        settings = get_settings(database_url=database_url)
        count = purge_jobs(settings.database_url, older_than=older_than, statuses=statuses)
        click.echo(removed_message(count))

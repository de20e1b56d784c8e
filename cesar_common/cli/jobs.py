"""`cesar jobs`: look after the job database by hand (`cesar jobs purge`)."""

from __future__ import annotations

import click

from cesar_common.cli._common import cli_errors, db_option

FINAL_STATUSES = ("completed", "error", "cancelled")


@click.group()
def jobs() -> None:
    """Manage stored jobs."""


@jobs.command()
@click.option(
    "--older-than",
    required=True,
    metavar="AGE",
    help="Remove jobs that finished longer ago than this: 90m, 12h, 7d, 2w.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(FINAL_STATUSES, case_sensitive=False),
    help="Only jobs that ended with this status (repeat for several). [default: every finished job]",
)
@db_option
@click.option("--verbose", is_flag=True, default=False, help="Show a traceback on failure.")
def purge(older_than: str, statuses: tuple[str, ...], database_url: str | None, verbose: bool) -> None:
    """Delete finished jobs older than AGE, with their audio and results.

    Queued and processing jobs are never removed. Workers do the same on their own when
    CESAR_RETENTION_DAYS is set.
    """
    with cli_errors(verbose=verbose):
        from cesar_common.jobs_cmd import purge_jobs, removed_message
        from cesar_common.settings import get_settings

        url = database_url or get_settings().database_url
        count = purge_jobs(url, older_than=older_than, statuses=[s.lower() for s in statuses])
        click.echo(removed_message(count))

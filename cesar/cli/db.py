"""`cesar db`: the job database's schema (`cesar db upgrade`, `cesar db current`) and where its audio is
kept (`cesar db move`)."""

from __future__ import annotations

import click

from cesar.cli.options import COMMAND_SETTINGS, db_option, verbose_option
from cesar_common.choices import AUDIO_PLACES
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


@db.command(context_settings=COMMAND_SETTINGS)
@click.option(
    "--to",
    "destination",
    type=click.Choice(AUDIO_PLACES),
    required=True,
    help="objects: into the object store CESAR_BLOB_URL names; database: back into the job database.",
)
@click.option(
    "--batch", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Jobs per listing."
)
@db_option
@verbose_option("Show a traceback on failure.")
def move(destination: str, batch: int, database_url: str | None, verbose: bool) -> None:
    """Move the audio already stored into the object store (CESAR_BLOB_URL), or back into the database.

    Safe while Cesar serves, and resumable: each job's audio is copied and then swapped in one
    transaction; run it again after a stop to move what is left. Set CESAR_BLOB_URL on the API and the
    workers first (new audio then goes there); to leave the object store, unset it there first and keep
    it set for this command.
    """
    with one_line_errors(verbose=verbose):
        from cesar.audio_moves import MoveReport, move_audio

        def progress(report: MoveReport) -> None:
            click.echo(f"\r{report.moved} jobs moved", nl=False, err=True)

        report = move_audio(database_url, to=destination, batch=batch, on_job=progress)
        click.echo("", err=True)
        click.echo(report.line())

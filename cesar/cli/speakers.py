"""`cesar speakers`: the voice library (the people diarized transcripts are named after), in the local
database (--db) or on a Cesar server (--server)."""

from __future__ import annotations

from pathlib import Path

import click

from cesar.cli.options import COMMAND_SETTINGS, option
from cesar.cli.place import place_given, place_options
from cesar_common.exits import one_line_errors

__all__ = ["speakers"]

library_options = place_options("voice library", "people")


@click.group(context_settings=COMMAND_SETTINGS)
def speakers() -> None:
    """The voice library: people whose voices diarized transcripts call by name.

    Acts on the local job database (--db, CESAR_DATABASE_URL; what `cesar transcribe --diarize` names
    voices from), or with --server (CESAR_SERVER) on a server's. A person is a name and voice prints,
    each from an audio sample of them speaking alone or from a speaker of a diarized job.
    """


@speakers.command(context_settings=COMMAND_SETTINGS)
@click.argument("name")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--job",
    "job_id",
    metavar="ID",
    allow_from_autoenv=False,
    help="Take the voice from this completed diarized job instead.",
)
@click.option(
    "--label", metavar="SPEAKER_nn", allow_from_autoenv=False, help="With --job: the speaker's label in it."
)
@option(
    "--wait/--no-wait",
    default=True,
    help="With --server: wait until a worker has read the sample, and say how it went. [default: wait]",
)
@library_options
def add(
    name: str,
    file: Path | None,
    job_id: str | None,
    label: str | None,
    wait: bool,
    database_url: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Add a voice print to NAME (a new person, or one more print of theirs).

    From FILE, an audio sample of the person speaking alone (any format FFmpeg reads; at least 3 s of
    speech; the first 10 minutes are read): `cesar speakers add Diane diane.m4a`. Or from a speaker of a
    completed diarized job: `cesar speakers add Diane --job ID --label SPEAKER_01`.
    """
    with one_line_errors(verbose=verbose):
        from cesar.speakers import run_add

        run_add(
            name,
            file,
            job_id=job_id,
            label=label,
            wait=wait,
            place=place_given(database_url, server, api_key),
            as_json=as_json,
            verbose=verbose,
        )


@speakers.command("list", context_settings=COMMAND_SETTINGS)
@library_options
def list_people(
    database_url: str | None, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    """Everyone in the voice library: name, id, voice prints and the seconds of speech they hold."""
    with one_line_errors(verbose=verbose):
        from cesar.speakers import run_list

        run_list(place_given(database_url, server, api_key), as_json=as_json, verbose=verbose)


@speakers.command(context_settings=COMMAND_SETTINGS)
@click.argument("who", metavar="NAME_OR_ID")
@library_options
def show(
    who: str, database_url: str | None, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    """One person and their voice prints: where each came from, how much speech, ready or why not."""
    with one_line_errors(verbose=verbose):
        from cesar.speakers import run_show

        run_show(who, place_given(database_url, server, api_key), as_json=as_json, verbose=verbose)


@speakers.command(context_settings=COMMAND_SETTINGS)
@click.argument("who", metavar="NAME_OR_ID")
@click.argument("new_name")
@library_options
def rename(
    who: str,
    new_name: str,
    database_url: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Rename a person. Transcripts made from now on use the new name; those already made keep theirs."""
    with one_line_errors(verbose=verbose):
        from cesar.speakers import run_rename

        run_rename(
            who, new_name, place_given(database_url, server, api_key), as_json=as_json, verbose=verbose
        )


@speakers.command(context_settings=COMMAND_SETTINGS)
@click.argument("who", metavar="NAME_OR_ID")
@library_options
def remove(
    who: str, database_url: str | None, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    """Delete a person and every voice print of theirs (voice prints are biometric data). Transcripts
    that named them keep the name."""
    with one_line_errors(verbose=verbose):
        from cesar.speakers import run_remove

        run_remove(who, place_given(database_url, server, api_key), as_json=as_json, verbose=verbose)

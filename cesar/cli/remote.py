"""The client commands: `cesar submit` and `cesar remote ...` act on a Cesar server over HTTP (--server),
never on a local database (that is `cesar jobs`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cesar.cli.options import COMMAND_SETTINGS, job_options, option, verbose_option
from cesar_common.choices import TRANSCRIPT_FORMATS
from cesar_common.db.records import PUBLIC_STATUSES

__all__ = ["remote", "submit"]

F = TypeVar("F", bound=Callable[..., Any])

_SERVER_HELP = "The Cesar server. [default: http://127.0.0.1:5000]"
_KEY_HELP = "The server's API key, when it has one (sent as Authorization: Bearer; never in a URL)."
_FORMAT = click.Choice(TRANSCRIPT_FORMATS, case_sensitive=False)


def server_options(func: F) -> F:
    """--server, --api-key, --json and --verbose, which every client command takes."""
    for decorate in reversed(
        [
            option("--server", metavar="URL", help=_SERVER_HELP),
            option("--api-key", metavar="KEY", help=_KEY_HELP),
            option("--json", "as_json", is_flag=True, help="Print JSON (for scripts)."),
            verbose_option("Show a traceback on failure."),
        ]
    ):
        func = decorate(func)
    return func


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("sources", nargs=-1, required=True, metavar="FILE|GLOB|URL...")
@option("-m", "--model", help="Model (from the server's allowlist). [default: the server's default model]")
@job_options
@option("--wait", is_flag=True, help="Follow each job to its end (live progress) and write its transcript.")
@option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --wait and one input: write the transcript here, in the format of its extension (repeat "
    "for several formats). [default: stdout]",
)
@option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    type=_FORMAT,
    help="With --wait: the format(s) to write (repeat for several). [default: txt, or -o's extension]",
)
@option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --wait: write DIR/<name>.<format> for each input. [default: the current directory when "
    "there are several inputs]",
)
@option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True, help="Inputs sent at once.")
@option(
    "--live",
    is_flag=True,
    help="The URLs are live streams (Icecast, Shoutcast, HLS .m3u8): each is transcribed while it plays, "
    "until it ends, --max-seconds of it, or `cesar remote cancel`.",
)
@option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --live: the most audio of each stream to transcribe. [default: the server's "
    "CESAR_LIVE_MAX_SECONDS]",
)
@server_options
def submit(
    sources: tuple[str, ...],
    model: str | None,
    wait: bool,
    outputs: tuple[Path, ...],
    formats: tuple[str, ...],
    output_dir: Path | None,
    parallel: int,
    live: bool,
    max_seconds: float | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
    **job: Any,
) -> None:
    """Send files, globs or URLs to a Cesar server to transcribe; print each job's id.

    With --wait, follow the jobs with a live progress bar, write their transcripts and print a summary.
    Running the same command again is safe: it finds the jobs it made before (an Idempotency-Key from
    each file's name and bytes and the options) instead of making new ones, and writes what they made.

    With --live, the URLs are live streams, transcribed as they play (`cesar submit --live
    https://radio.example/live.m3u8 --max-seconds 600 --wait -o radio.srt`).
    """
    from cesar.remote.commands import run_submit

    run_submit(
        sources,
        model=model,
        job=job,
        wait=wait,
        outputs=outputs,
        formats=tuple(fmt.lower() for fmt in formats),
        output_dir=output_dir,
        parallel=parallel,
        live=live,
        max_seconds=max_seconds,
        server=server,
        api_key=api_key,
        as_json=as_json,
        verbose=verbose,
    )


@click.group(context_settings=COMMAND_SETTINGS)
def remote() -> None:
    """Jobs on a Cesar server, over HTTP (--server, CESAR_SERVER): list, show, cancel, delete, fetch
    transcripts, health. `cesar submit` sends work."""


@remote.command("list", context_settings=COMMAND_SETTINGS)
@option(
    "--status",
    type=click.Choice([status.value for status in PUBLIC_STATUSES], case_sensitive=False),
    help="Only jobs in this status.",
)
@option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Jobs shown, newest first."
)
@server_options
def list_jobs(
    status: str | None, limit: int, server: str | None, api_key: str | None, as_json: bool, verbose: bool
) -> None:
    """The server's jobs, newest first."""
    from cesar.remote.commands import run_list

    run_list(status, limit, server=server, api_key=api_key, as_json=as_json, verbose=verbose)


@remote.command(context_settings=COMMAND_SETTINGS)
@click.argument("job_id")
@server_options
def show(job_id: str, server: str | None, api_key: str | None, as_json: bool, verbose: bool) -> None:
    """One job: status, progress, times, error."""
    from cesar.remote.commands import run_show

    run_show(job_id, server=server, api_key=api_key, as_json=as_json, verbose=verbose)


@remote.command(context_settings=COMMAND_SETTINGS)
@click.argument("job_id")
@server_options
def cancel(job_id: str, server: str | None, api_key: str | None, as_json: bool, verbose: bool) -> None:
    """Cancel a job: a queued one at once, a running one between two segments."""
    from cesar.remote.commands import run_action

    run_action("cancel", job_id, server=server, api_key=api_key, as_json=as_json, verbose=verbose)


@remote.command(context_settings=COMMAND_SETTINGS)
@click.argument("job_id")
@server_options
def delete(job_id: str, server: str | None, api_key: str | None, as_json: bool, verbose: bool) -> None:
    """Delete a finished job with its audio and transcript."""
    from cesar.remote.commands import run_action

    run_action("delete", job_id, server=server, api_key=api_key, as_json=as_json, verbose=verbose)


@remote.command(context_settings=COMMAND_SETTINGS)
@click.argument("job_id")
@option("-f", "--format", "fmt", type=_FORMAT, default="txt", show_default=True, help="Transcript format.")
@option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write it here. [default: stdout]"
)
@server_options
def transcript(
    job_id: str,
    fmt: str,
    output: Path | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """A completed job's transcript."""
    from cesar.remote.commands import run_transcript

    run_transcript(job_id, fmt.lower(), output, server=server, api_key=api_key, verbose=verbose)


@remote.command(context_settings=COMMAND_SETTINGS)
@server_options
def health(server: str | None, api_key: str | None, as_json: bool, verbose: bool) -> None:
    """The server's health: database, workers alive, queue."""
    from cesar.remote.commands import run_health

    run_health(server=server, api_key=api_key, as_json=as_json, verbose=verbose)

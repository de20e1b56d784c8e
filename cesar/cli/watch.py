"""`cesar watch`: folders of media transcribed by a Cesar server as files arrive, the subtitles written
beside them (the work: :mod:`cesar.watch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cesar.cli.options import COMMAND_SETTINGS, job_options, option
from cesar.cli.remote import server_options
from cesar_common.choices import TRANSCRIPT_FORMATS

__all__ = ["watch"]


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument(
    "folders", nargs=-1, required=True, metavar="DIR...", type=click.Path(file_okay=False, path_type=Path)
)
@option("-m", "--model", help="Model (from the server's allowlist). [default: the server's default model]")
@job_options
@option(
    "-f",
    "--format",
    "formats",
    default="srt",
    show_default=True,
    metavar="FORMATS",
    help=f"What to write for each file, comma-separated, as <name>.<language>.<format>: "
    f"{', '.join(TRANSCRIPT_FORMATS)}.",
)
@option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the outputs under DIR, at each file's path in its folder. [default: beside each file]",
)
@option(
    "--extensions",
    multiple=True,
    metavar="EXTS",
    help="The files to take, by extension, comma-separated (.mkv,.mp3). [default: common audio and video]",
)
@option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="Leave files whose relative path or name matches (repeat). Hidden files and partial downloads "
    "(*.part, *.!qB, *.crdownload, *.tmp) are always left.",
)
@option(
    "--settle",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="A file is complete once its size and modification time stay unchanged this long.",
)
@option(
    "--poll",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Look at the folders every SECONDS instead of following file-system events (network shares). "
    "[default: events, or every 10 s where they cannot be had]",
)
@option("--once", is_flag=True, help="Transcribe what is there now, wait for it, print a summary and exit.")
@option("--dry-run", is_flag=True, help="Say what would be submitted; submit nothing.")
@option("--overwrite", is_flag=True, help="Transcribe files that already have their outputs, again.")
@option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Where the watcher keeps its jobs and failures across restarts. [default: "
    "~/.local/state/cesar/watch-<folders>.json]",
)
@option(
    "--retries",
    type=click.IntRange(0, 100),
    default=2,
    show_default=True,
    help="Tries of a failed file after the first, before it is left alone.",
)
@server_options
def watch(
    folders: tuple[Path, ...],
    model: str | None,
    formats: str,
    output_dir: Path | None,
    extensions: tuple[str, ...],
    ignore: tuple[str, ...],
    settle: float,
    poll: float | None,
    once: bool,
    dry_run: bool,
    overwrite: bool,
    state: Path | None,
    retries: int,
    server: str | None,
    api_key: str | None,
    as_json: bool,
    verbose: bool,
    **job: Any,
) -> None:
    """Watch folders: each audio or video file that arrives is transcribed by a Cesar server and its
    subtitles written beside it, named as media servers read them (`Movie (2019).mkv` gets
    `Movie (2019).en.srt`).

    Each file is submitted once, by its content: restarting, a second watcher or a renamed copy queue
    nothing twice. A file changed while its job runs is transcribed again; one deleted, its job cancelled.
    """
    from cesar.watch import run_watch

    chosen = tuple(part.strip().lower() for part in formats.split(",") if part.strip())
    unknown = [fmt for fmt in chosen if fmt not in TRANSCRIPT_FORMATS]
    if unknown or not chosen:
        raise click.BadParameter(
            f"{', '.join(unknown) or formats!r}: use {', '.join(TRANSCRIPT_FORMATS)}", param_hint="--format"
        )
    run_watch(
        folders,
        job=job,
        model=model,
        formats=chosen,
        output_dir=output_dir,
        extensions=extensions,
        ignore=ignore,
        settle=settle,
        poll=poll,
        once=once,
        dry_run=dry_run,
        overwrite=overwrite,
        state=state,
        retries=retries,
        server=server,
        api_key=api_key,
        verbose=verbose,
    )

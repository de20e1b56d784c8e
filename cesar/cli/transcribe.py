"""`cesar transcribe`: one file to text, subtitles or JSON.

Only Click is imported here; the engine loads when the command runs, so `cesar --help` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from cesar.cli.options import (
    COMMAND_SETTINGS,
    batch_size_option,
    compute_type_option,
    db_option,
    device_option,
    job_options,
    job_options_from,
    option,
)
from cesar_common.choices import BUNDLED_MODEL, TRANSCRIPT_FORMATS
from cesar_common.exits import one_line_errors

__all__ = ["transcribe"]

SECONDS = click.FloatRange(min=0)


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("input_path", metavar="INPUT")
@option("-o", "--output", help="Write the transcript here (atomically). Default: stdout.")
@option(
    "-f",
    "--format",
    "fmt",
    envvar="CESAR_FORMAT",
    type=click.Choice(TRANSCRIPT_FORMATS, case_sensitive=False),
    help="Output format. Default: from the output's extension, else txt.",
)
@option(
    "-m",
    "--model",
    default=BUNDLED_MODEL,
    show_default=True,
    help="Model name (tiny.en is bundled), Hugging Face repo id, or CTranslate2 model directory.",
)
@device_option
@compute_type_option
@job_options
@option("--beam-size", type=click.IntRange(min=1), default=5, show_default=True, help="Beams searched.")
@option("--start-time", type=SECONDS, metavar="S", help="Transcribe from this many seconds in.")
@option("--end-time", type=SECONDS, metavar="S", help="Transcribe up to this many seconds in.")
@option(
    "--threads",
    type=click.IntRange(min=0),
    help="CPU threads (0: faster-whisper's default).",
)
@batch_size_option
@db_option
@option("-q", "--quiet", is_flag=True, help="Print only the transcript (or errors).")
@option("-v", "--verbose", is_flag=True, help="Log details; show tracebacks on errors.")
def transcribe(
    input_path: str,
    output: str | None,
    fmt: str | None,
    model: str,
    device: str | None,
    compute_type: str | None,
    beam_size: int,
    start_time: float | None,
    end_time: float | None,
    threads: int | None,
    batch_size: int | None,
    database_url: str | None,
    quiet: bool,
    verbose: bool,
    **job: Any,
) -> None:
    """Transcribe INPUT (any audio or video file FFmpeg reads) with Whisper.

    Without -o the transcript goes to stdout and progress to stderr, so
    `cesar transcribe talk.mp3 | grep word` works. With --diarize, the voices the voice library of the
    job database (--db; `cesar speakers`) knows are called by name; none is made for it.
    """
    with one_line_errors(verbose=verbose):
        from cesar.transcribe_file import run_transcribe

        run_transcribe(
            input_path,
            job_options_from(job, model=model),
            output=output,
            fmt=fmt,
            device=device,
            compute_type=compute_type,
            threads=threads,
            batch_size=batch_size,
            beam_size=beam_size,
            start_time=start_time,
            end_time=end_time,
            quiet=quiet,
            verbose=verbose,
            database_url=database_url,
        )

"""`cesar transcribe`: one file to text, subtitles or JSON.

Only Click is imported here; the engine loads when the command runs, so `cesar --help` stays fast.
"""

from __future__ import annotations

import click

from cesar_common.cli._common import batch_size_option, cli_errors, compute_type_option, device_option

FORMAT_NAMES = ("txt", "srt", "vtt", "json", "tsv")  # cesar_common.transcription.writers.FORMATS
SECONDS = click.FloatRange(min=0)


@click.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", help="Write the transcript here (atomically). Default: stdout.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(FORMAT_NAMES, case_sensitive=False),
    help="Output format. Default: from the output's extension, else txt.",
)
@click.option(
    "-m",
    "--model",
    envvar="CESAR_MODEL",
    show_envvar=True,
    help="Model name (tiny.en is bundled), Hugging Face repo id, or CTranslate2 model directory.",
)
@device_option
@compute_type_option
@click.option("-l", "--language", help="Language code (en, fr, ...). Default: detected.")
@click.option(
    "--task",
    type=click.Choice(("transcribe", "translate"), case_sensitive=False),
    default="transcribe",
    show_default=True,
    help="translate: into English.",
)
@click.option(
    "--no-vad", is_flag=True, help="Turn voice activity detection off (silence may turn into words)."
)
@click.option("--word-timestamps", is_flag=True, help="Time every word (JSON output shows them).")
@click.option("--beam-size", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--initial-prompt", help="Text that primes the vocabulary (names, jargon).")
@click.option("--start-time", type=SECONDS, metavar="S", help="Transcribe from this many seconds in.")
@click.option("--end-time", type=SECONDS, metavar="S", help="Transcribe up to this many seconds in.")
@click.option(
    "--threads",
    envvar="CESAR_THREADS",
    show_envvar=True,
    type=click.IntRange(min=0),
    help="CPU threads (0: faster-whisper's default).",
)
@batch_size_option
@click.option("-q", "--quiet", is_flag=True, help="Print only the transcript (or errors).")
@click.option("-v", "--verbose", is_flag=True, help="Log details; show tracebacks on errors.")
def transcribe(
    input_path: str,
    output: str | None,
    fmt: str | None,
    model: str | None,
    device: str | None,
    compute_type: str | None,
    language: str | None,
    task: str,
    no_vad: bool,
    word_timestamps: bool,
    beam_size: int,
    initial_prompt: str | None,
    start_time: float | None,
    end_time: float | None,
    threads: int | None,
    batch_size: int | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Transcribe INPUT (any audio or video file FFmpeg reads) with Whisper.

    Without -o the transcript goes to stdout and progress to stderr, so
    `cesar transcribe talk.mp3 | grep word` works.
    """
    with cli_errors(verbose=verbose):
        from cesar_common.transcribe_cmd import run_transcribe

        run_transcribe(
            input_path,
            output=output,
            fmt=fmt,
            model=model,
            device=device,
            compute_type=compute_type,
            threads=threads,
            batch_size=batch_size,
            language=language,
            task=task.lower(),
            vad=not no_vad,
            word_timestamps=word_timestamps,
            beam_size=beam_size,
            initial_prompt=initial_prompt,
            start_time=start_time,
            end_time=end_time,
            quiet=quiet,
            verbose=verbose,
        )

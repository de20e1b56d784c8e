"""``cesar live``: transcribe a microphone, stdin or a file live, on a Cesar server (its ``GET /live``
WebSocket). The command only parses options: :mod:`cesar.live_client` does the work."""

from __future__ import annotations

from pathlib import Path

import click

from cesar.cli.options import COMMAND_SETTINGS, option, verbose_option
from cesar_common.choices import TASKS, TRANSCRIPT_FORMATS

__all__ = ["live"]

#: what -o writes: no rttm, a live session has no speakers (cesar.live_client.LIVE_FORMATS)
_FORMATS = tuple(fmt for fmt in TRANSCRIPT_FORMATS if fmt != "rttm")


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("source", metavar="SOURCE")
@option("-m", "--model", help="Model (from the server's allowlist). [default: the server's default model]")
@option("-l", "--language", metavar="CODE", help="Spoken language (ISO 639: en, de). [default: detected]")
@option(
    "--task",
    type=click.Choice(TASKS, case_sensitive=False),
    help="transcribe, or translate into English. [default: transcribe]",
)
@option("--prompt", metavar="TEXT", help="Words to expect (names, jargon), as Whisper's initial prompt.")
@option(
    "--realtime",
    is_flag=True,
    help="Send a file at speaking pace, as a microphone would (demos, tests). [default: as fast as the "
    "connection takes it; a device is real time anyway]",
)
@option(
    "--input-format",
    metavar="FMT",
    help="SOURCE is an FFmpeg input device of this kind (alsa default, avfoundation :0, ...), or, with "
    "SOURCE -, stdin's format: s16le for raw 16-bit mono PCM (see --sample-rate). [default: a file, or "
    "for - any container the server decodes]",
)
@option(
    "--sample-rate",
    type=click.IntRange(8000, 48000),
    metavar="HZ",
    help="With --input-format s16le: the samples a second. [default: 16000]",
)
@option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="At the end, write the transcript here, in the format of its extension (or --format).",
)
@option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(_FORMATS, case_sensitive=False),
    help="With -o: the transcript's format. [default: -o's extension]",
)
@option("--server", metavar="URL", help="The Cesar server. [default: http://127.0.0.1:5000]")
@option(
    "--api-key",
    metavar="KEY",
    help="The server's API key, when it has one (sent as Authorization: Bearer; never in a URL).",
)
@verbose_option("Show a traceback on failure.")
def live(
    source: str,
    model: str | None,
    language: str | None,
    task: str | None,
    prompt: str | None,
    realtime: bool,
    input_format: str | None,
    sample_rate: int | None,
    output: Path | None,
    fmt: str | None,
    server: str | None,
    api_key: str | None,
    verbose: bool,
) -> None:
    """Transcribe live: print each piece of speech as the server confirms it.

    SOURCE is a file, - for stdin, or with --input-format a microphone: `cesar live --input-format alsa
    default` (Linux, PipeWire and PulseAudio too), `--input-format avfoundation :0` (macOS). On a terminal
    the words still being spoken show on the last line. Ctrl-C ends the audio: the server transcribes what
    is left, then -o is written (a second Ctrl-C quits at once). A lost connection is resumed where it
    stopped.
    """
    from cesar.live_client import run_live

    run_live(
        source,
        server=server,
        api_key=api_key,
        start={
            "model": model,
            "language": language,
            "task": task.lower() if task else None,
            "prompt": prompt,
        },
        realtime=realtime,
        input_format=input_format,
        sample_rate=sample_rate,
        output=output,
        fmt=fmt.lower() if fmt else None,
        verbose=verbose,
    )

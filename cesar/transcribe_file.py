"""What `cesar transcribe` does: check input and output, load the model, transcribe, write atomically.

The Click command in ``cesar.cli.transcribe`` only parses options and calls :func:`run_transcribe`.

Ctrl-C is never lost: whenever it comes before the output is written, the command ends as interrupted (exit
130, no output, no traceback; :func:`cesar_common.exits.one_line_errors`). While the model loads, Python's own
KeyboardInterrupt stops it at once; from then on, until the output is written, Ctrl-C sets a stop event that
the engine watches (even within a batch) and that is checked again once the engine is done and right before
the output is written: an interrupt the engine no longer looked for cannot end in a transcript. A second
Ctrl-C forces the stop (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cesar_common.errors import InvalidInputError, NotFoundError
from cesar_common.job_options import TranscribeOptions
from cesar_common.settings import get_settings
from cesar_common.signals import stop_on_signals
from cesar_common.transcription.audio import probe_audio
from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.whisper import (
    DecodeOptions,
    TranscriptionCancelled,
    transcribe,
    validate_options,
)
from cesar_common.transcription.writers import FORMATS, format_for_path, render

if TYPE_CHECKING:
    from cesar_common.diarization.library import Library

__all__ = ["run_transcribe", "transcribe"]

STDOUT = "-"


def run_transcribe(
    input_path: str | Path,
    job: TranscribeOptions | None = None,
    *,
    output: str | Path | None = None,
    fmt: str | None = None,
    device: str | None = None,
    compute_type: str | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
    beam_size: int = 5,
    start_time: float | None = None,
    end_time: float | None = None,
    quiet: bool = False,
    verbose: bool = False,
    database_url: str | None = None,
) -> TranscriptionResult:
    """Transcribe one file as ``job`` asks (default: the settings' model, every other option at its
    default) to ``output`` (stdout when None or ``-``); progress and summary go to stderr. A diarized
    transcript names the voices the voice library of the job database (``database_url``, default the
    settings') knows, as a worker's does.

    Everything that can be refused cheaply (input, options, output path, a database that cannot be read)
    is refused before the model loads. ``device``, ``compute_type``, ``threads`` and ``batch_size``
    default to the settings.
    """
    from cesar.speakers import local_library, name_voices

    started = time.perf_counter()
    settings = get_settings(
        device=device,
        compute_type=compute_type,
        threads=threads,
        batch_size=batch_size,
        database_url=database_url,
    )
    job = job or TranscribeOptions(model=settings.model)
    source = check_input(input_path)
    to_stdout = output is None or str(output) == STDOUT
    options = DecodeOptions.for_job(
        job, beam_size=beam_size, start_time=start_time, end_time=end_time, batch_size=settings.batch_size
    )
    validate_options(options)
    console = Console(stderr=True, quiet=quiet)
    if verbose:
        from cesar_common.logs import configure_logging

        configure_logging("info", name="cesar-transcribe")
    with contextlib.ExitStack() as stack:
        target = (
            None
            if output is None or to_stdout
            else stack.enter_context(reserved_output(Path(output), source))
        )
        chosen = choose_format(fmt, None if to_stdout else output)
        if chosen == "rttm" and not job.diarize:  # refused before the model loads, not an empty file
            raise InvalidInputError("rttm is the speaker turns: it needs --diarize")
        library = local_library(settings.database_url, job)
        load_started = time.perf_counter()
        with console.status(f"Loading model {job.model}...", spinner="dots"):
            loaded = load_model(
                job.model,
                device=settings.device,
                compute_type=settings.compute_type,
                threads=settings.threads,
                offline=settings.offline,
                models_dir=settings.models_dir,
            )
        load_seconds = time.perf_counter() - load_started
        stop = stack.enter_context(_ctrl_c_stops())
        try:
            result = _transcribe_with_progress(console, loaded, source, options, stop)
        except TranscriptionCancelled:  # the stop event, set by Ctrl-C, is all that cancels it here
            raise KeyboardInterrupt from None
        _raise_if_interrupted(stop)  # a Ctrl-C after the engine's last look at the event
        result, speakers = name_voices(result, library)
        text = render(result, chosen)
        _raise_if_interrupted(stop)  # the last moment: once written, the transcript stands
        if target is None:
            _print_stdout(text)
        else:
            target.commit(text)
    _summary(
        console, result, loaded, started, load_seconds, None if target is None else (target.path, chosen)
    )
    if library is not None and result.diarized:
        console.print(_named_line(speakers, library), highlight=False, markup=False, soft_wrap=True)
    return result


def check_input(path: str | Path) -> Path:
    """The input path if it is a readable, non-empty file holding audio; else a one-line error."""
    source = Path(path).expanduser()
    if not source.exists():
        raise NotFoundError(f"input file not found: {source} (check the path)")
    if source.is_dir():
        raise InvalidInputError(f"{source} is a directory: give the path of an audio or video file")
    if not source.is_file():
        raise InvalidInputError(f"{source} is not a regular file: give the path of an audio or video file")
    if source.stat().st_size == 0:
        raise InvalidInputError(f"{source} is empty (0 bytes): there is no audio to transcribe")
    if not os.access(source, os.R_OK):
        raise InvalidInputError(f"cannot read {source}: permission denied")
    probe_audio(source)  # cheap: opens the file and decodes its first packets
    return source


def choose_format(fmt: str | None, output: str | Path | None) -> str:
    """``--format``, else the output's extension, else txt. An extension that names no format is refused
    rather than written as text under a misleading name."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise InvalidInputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "txt"
    found = format_for_path(output)
    suffix = Path(output).suffix
    if found is None and suffix:
        *others, last = (f".{name}" for name in FORMATS)
        extensions = f"{', '.join(others)} or {last}"
        raise InvalidInputError(
            f"cannot tell the format from {Path(output).name!r}: "
            f"name the output {extensions}, or pass --format"
        )
    return found or "txt"


@dataclass
class ReservedOutput:
    """A temporary file next to the output, renamed over it once the transcript is complete."""

    path: Path
    temp: Path
    committed: bool = False

    def commit(self, text: str) -> None:
        with open(self.temp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(self.temp, _mode_for(self.path))
        os.replace(self.temp, self.path)
        self.committed = True


@contextlib.contextmanager
def reserved_output(path: Path, source: Path | None = None) -> Iterator[ReservedOutput]:
    """Prove ``path`` can be written (by creating its temporary file) and remove the leftovers on failure."""
    path = path.expanduser()
    if path.is_dir():
        raise InvalidInputError(f"output {path} is a directory: give a file name, e.g. {path / 'out.txt'}")
    if source is not None and path.exists() and path.resolve() == source.resolve():
        raise InvalidInputError(f"output {path} is the input file: choose another output name")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: directory {parent} does not exist (create it first)")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInputError(f"cannot write {path}: the file is read-only (choose another output)")
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {path}: {exc.strerror or exc} (choose another output with -o)"
        ) from exc
    os.close(handle)
    reserved = ReservedOutput(path=path, temp=Path(temp))
    try:
        yield reserved
    finally:
        if not reserved.committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(reserved.temp)


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual ones (0666 less the umask)."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _ctrl_c_stops() -> contextlib.AbstractContextManager[threading.Event]:
    """A stop event that Ctrl-C sets (a second one raises KeyboardInterrupt), until the context ends.

    A shell starts a background job with SIGINT ignored, on purpose: such a run goes on ignoring it.
    """
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    return stop_on_signals(signals=() if ignored else (signal.SIGINT,))


def _raise_if_interrupted(stop: threading.Event) -> None:
    """End the command as an unhandled Ctrl-C would (``one_line_errors`` says "interrupted", exit 130)."""
    if stop.is_set():
        raise KeyboardInterrupt


def _transcribe_with_progress(
    console: Console, loaded: LoadedModel, source: Path, options: DecodeOptions, stop: threading.Event
) -> TranscriptionResult:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[audio]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task(f"Transcribing {source.name}", total=None, audio="")

    def on_progress(done: float, total: float) -> None:
        # the first report comes once the audio is decoded and the options accepted: a file
        # refused before then shows no bar, only its error line
        if not progress.live.is_started:
            progress.start()
        audio = f"{done:.1f}/{total:.1f} s audio"
        progress.update(task, completed=done, total=max(total, 0.001), audio=audio)

    try:
        return transcribe(loaded, source, options, on_progress=on_progress, should_stop=stop.is_set)
    finally:
        if progress.live.is_started:  # a bar never shown leaves no blank line behind (rich prints one)
            progress.stop()


def _print_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader (`| head`) left: nothing more to say, and Python must not complain at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _named_line(speakers: list[dict[str, Any]], library: Library) -> str:
    """Which voices the voice library named, and how close each was."""
    named = [entry for entry in speakers if entry["speaker_id"] is not None]
    if not named:
        people = f"{len(library)} {'person' if len(library) == 1 else 'people'}"
        return f"voice library: no voice is one of its {people}"
    return "voice library: " + ", ".join(
        f"{entry['label']} is {entry['speaker']} (distance {entry['distance']:.3f})" for entry in named
    )


def _summary(
    console: Console,
    result: TranscriptionResult,
    loaded: LoadedModel,
    started: float,
    load_seconds: float,
    written: tuple[Path, str] | None,
) -> None:
    wall = time.perf_counter() - started
    speed = result.duration / wall if wall > 0 else 0.0
    language = (
        f"language {result.language} ({result.language_probability:.0%})" if result.language else "language ?"
    )
    mode = f"batched x{result.batch_size}" if result.mode == "batched" else result.mode
    speakers = f" · {len(result.speakers())} speakers" if result.diarized else ""
    console.print(
        f"{result.duration:.1f} s of audio in {wall:.1f} s ({speed:.1f}x real time; model loaded in "
        f"{load_seconds:.1f} s) · model {loaded.name} · {loaded.device} {loaded.compute_type} · {mode} · "
        f"{language} · {len(result.segments)} segments{speakers}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if written is not None:
        console.print(f"wrote {written[0]} ({written[1]})", highlight=False, markup=False, soft_wrap=True)

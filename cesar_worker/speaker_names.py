"""The voice library on the worker: diarized results named after the people it knows, and audio samples
read into voice prints (a ``sample`` job: :meth:`cesar_common.db.store.JobStore.add_voice_sample`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from cesar_common.db.records import JobRecord, JobResult
from cesar_common.db.store import JobStore
from cesar_common.diarization.naming import name_speakers
from cesar_common.job_options import TranscribeOptions
from cesar_worker.jobrun import JobStopped, StopReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from cesar_common.diarization.library import Library, SamplePrint

__all__ = ["MAX_SAMPLE_SECONDS", "library_for", "named", "read_sample"]

#: the longest audio sample read (a few minutes of one voice make as good a print as more)
MAX_SAMPLE_SECONDS = 600.0


def library_for(store: JobStore, options: TranscribeOptions, owner: str) -> Library | None:
    """The voice prints a diarized job of ``owner`` with ``options`` is matched against (its owner's
    library, one query); None when it is not to be named or nobody it may name has a print."""
    if not (options.diarize and options.name_speakers):
        return None
    from cesar_common.diarization.library import Library

    rows = store.voice_library_rows(owner, options.known_speakers)
    return Library.build(rows) if rows else None


def named(store: JobStore, job: JobRecord, result: JobResult) -> JobResult:
    """A diarized ``result`` with the voices the library knows named, and its list of speakers saying
    which label is whom and how close; other results as they are."""
    if result.speakers is None:
        return result
    segments, speakers = name_speakers(
        result.segments, result.voices, library_for(store, job.options, job.owner)
    )
    return dataclasses.replace(result, segments=segments, speakers=speakers)


def read_sample(path: Path, *, max_seconds: float, should_stop: Callable[[], bool]) -> SamplePrint:
    """The voice print of the audio sample at ``path``, at most ``max_seconds`` long. InvalidInputError
    for too little speech or several voices."""
    from cesar_common.diarization.backend import DiarizationStopped
    from cesar_common.diarization.library import sample_print
    from cesar_common.transcription import whisper

    try:
        samples = whisper.decode(path, max_seconds=max_seconds, should_stop=should_stop)
        return sample_print(samples, should_stop=should_stop)
    except (whisper.TranscriptionCancelled, DiarizationStopped) as exc:
        raise JobStopped(StopReason.CANCELLED) from exc

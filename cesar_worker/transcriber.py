"""What the worker asks of a transcriber, and the real one (faster-whisper through cesar_common).

The worker loop only knows the :class:`Transcriber` protocol, so tests can run the real loop, database and
processes with a fake one (``run_worker(transcriber_factory=...)``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cesar_common.db.records import Decoding, JobRecord, JobResult
from cesar_common.errors import ModelTooLargeError, OutOfMemoryError
from cesar_common.settings import Settings
from cesar_worker import model_memory
from cesar_worker.jobrun import JobStopped, StopReason
from cesar_worker.model_cache import ModelCache, ModelKey

if TYPE_CHECKING:
    import numpy as np

    from cesar_common.transcription.cuts import SplitPlan
    from cesar_common.transcription.loading import LoadedModel
    from cesar_common.transcription.streaming import DecodeWords

__all__ = [
    "LiveDecoder",
    "ReportsMemory",
    "Transcriber",
    "TranscriberFactory",
    "WhisperTranscriber",
    "model_budget_bytes",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float], None]
SegmentCallback = Callable[[dict[str, Any]], None]
StopCallback = Callable[[], bool]


class Transcriber(Protocol):
    def preload(self, model: str) -> None:
        """Load ``model`` now so the first job does not wait for it."""

    def loaded_models(self) -> list[str]:
        """Names of the models in memory (shown in the worker's presence row)."""

    def transcribe(
        self,
        job: JobRecord,
        audio_path: Path,
        *,
        on_progress: ProgressCallback,
        on_segment: SegmentCallback,
        should_stop: StopCallback,
    ) -> JobResult:
        """Transcribe ``audio_path`` as ``job`` asks, handing each segment to ``on_segment`` (as the JSON
        a transcript keeps) as soon as it is final.

        Raise :class:`JobStopped` (or return early by raising it) when ``should_stop()`` turns true, and a
        ``CesarError`` for anything the job's input or the environment got wrong.
        """

    def plan_parts(
        self, job: JobRecord, audio_path: Path, *, split_seconds: float, should_stop: StopCallback
    ) -> SplitPlan | None:
        """How to cut a long file into parts of about ``split_seconds`` (at pauses), and the one language
        for every part; None when the file is short enough to transcribe whole."""

    def live_language_known(self, job: JobRecord) -> bool:
        """Whether a live session's language is known without hearing it (the job names it, or the model
        has only one), so that its decoding need not wait for its first seconds."""

    def live_decoder(self, job: JobRecord, first_audio: np.ndarray) -> LiveDecoder:
        """How a live session is decoded: its model's words for a buffer of audio (with a prompt), in
        the session's one language (the job's, the model's only one, or detected once on ``first_audio``,
        the session's first seconds)."""

    def close(self) -> None:
        """Free what the transcriber holds."""


@runtime_checkable
class ReportsMemory(Protocol):
    """A transcriber that says what its models take in memory (shown in the worker's presence row)."""

    def memory_report(self) -> dict[str, Any]:
        """The memory budget, the process's resident memory, the loads and unloads so far, and each loaded
        model (least recently used first) with its estimated and measured size: JSON, in bytes."""


@dataclass(frozen=True, slots=True)
class LiveDecoder:
    """A live session's decoder and what the job records of it."""

    decode: DecodeWords
    language: str
    language_probability: float
    decoding: Decoding


#: Builds the worker's transcriber from its settings (``run_worker(transcriber_factory=...)``).
TranscriberFactory = Callable[[Settings], Transcriber]


def model_budget_bytes(settings: Settings) -> int:
    """The memory the worker's models may take together: CESAR_WORKER_MODEL_MEMORY_MB, or (0) half the
    machine's memory (``cesar serve`` hands each of its workers its share of it)."""
    if settings.worker_model_memory_mb > 0:
        return settings.worker_model_memory_mb * model_memory.MIB
    return model_memory.auto_budget_bytes()


class WhisperTranscriber:
    """faster-whisper through ``cesar_common.transcription``, with loaded models kept in an LRU cache within
    the worker's memory budget (:mod:`cesar_worker.model_cache`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: ModelCache[LoadedModel] = ModelCache(
            self._load,
            capacity=settings.worker_models,
            budget_bytes=model_budget_bytes(settings),
            prepare=self._find,
            measure=model_memory.process_rss,
            in_use=_whisper_in_use,
        )
        self._device: tuple[str, str] | None = None

    def _key(self, name: str) -> ModelKey:
        """The model on this machine's concrete device and compute type (``auto`` resolved once)."""
        if self._device is None:
            from cesar_common.transcription import loading

            self._device = loading.resolve_device(self.settings.device, self.settings.compute_type)
        return ModelKey(name, *self._device)

    def _find(self, key: ModelKey) -> int:
        """Find (or download) the model's files before the cache makes room for it; its estimated size."""
        from cesar_common.transcription import loading

        path = loading.resolve_model(
            key.name, offline=self.settings.offline, models_dir=self.settings.models_dir
        )
        return model_memory.estimate_model_bytes(path, key.compute_type)

    def _load(self, key: ModelKey) -> LoadedModel:
        from cesar_common.transcription import loading

        started = time.monotonic()
        loaded = loading.load_model(
            key.name,
            device=key.device,
            compute_type=key.compute_type,
            threads=self.settings.threads,
            offline=self.settings.offline,
            models_dir=self.settings.models_dir,
        )
        log.info(
            "loaded model %s (%s, %s) in %.2f s",
            key.name,
            loaded.device,
            loaded.compute_type,
            time.monotonic() - started,
        )
        return loaded

    def preload(self, model: str) -> None:
        try:
            self.cache.get(self._key(model))
        except ModelTooLargeError as exc:  # each job for it fails with this; the worker serves the others
            log.error("cannot preload: %s", exc)

    def loaded_models(self) -> list[str]:
        return self.cache.names()

    def memory_report(self) -> dict[str, Any]:
        return {
            "budget_bytes": self.cache.budget_bytes,
            "max_models": self.cache.capacity or None,
            "rss_bytes": model_memory.process_rss(),
            "loads": self.cache.loads,
            "unloads": self.cache.unloads,
            "models": [
                {
                    "name": info.key.name,
                    "device": info.key.device,
                    "compute_type": info.key.compute_type,
                    "estimated_bytes": info.estimated_bytes,
                    "measured_bytes": info.measured_bytes,
                }
                for info in self.cache.loaded()
            ],
        }

    def transcribe(
        self,
        job: JobRecord,
        audio_path: Path,
        *,
        on_progress: ProgressCallback,
        on_segment: SegmentCallback,
        should_stop: StopCallback,
    ) -> JobResult:
        from cesar_common.transcription import whisper

        loaded = self.cache.get(self._key(job.model))
        options = whisper.DecodeOptions.for_job(
            job.options,
            batch_size=self.settings.batch_size,
            max_audio_seconds=self.settings.max_audio_seconds,
        )
        try:
            result = whisper.transcribe(
                loaded,
                audio_path,
                options,
                on_progress=on_progress,
                on_segment=lambda segment: on_segment(segment.to_dict()),
                should_stop=should_stop,
            )
        except whisper.TranscriptionCancelled as exc:
            raise JobStopped(StopReason.CANCELLED) from exc
        except OutOfMemoryError:
            self.cache.clear()  # give the memory back before the next job tries again
            raise
        return job_result(result)

    def plan_parts(
        self, job: JobRecord, audio_path: Path, *, split_seconds: float, should_stop: StopCallback
    ) -> SplitPlan | None:
        from cesar_common.errors import UnsupportedMediaError
        from cesar_common.transcription import audio, cuts, whisper

        try:
            declared = audio.probe_audio(audio_path).duration
        except UnsupportedMediaError:
            return None  # transcribing it whole says what is wrong with it
        if declared is not None and declared <= split_seconds:
            return None
        try:
            samples = whisper.decode(
                audio_path, max_seconds=self.settings.max_audio_seconds, should_stop=should_stop
            )
        except whisper.TranscriptionCancelled as exc:
            raise JobStopped(StopReason.CANCELLED) from exc
        plans = cuts.plan_cuts(samples.size / audio.SAMPLE_RATE, split_seconds, cuts.pauses_in(samples))
        if len(plans) < 2:
            return None
        language, probability = self._language(job, samples)
        return cuts.SplitPlan(plans, samples, language, probability)

    def _language(self, job: JobRecord, samples: np.ndarray) -> tuple[str, float]:
        """The one language of every part: the job's, or the model's only one, or detected once on the
        first 30 s of speech (looked for in the first five minutes)."""
        from cesar_common.transcription import faster_whisper_adapter, whisper
        from cesar_common.transcription.audio import SAMPLE_RATE

        loaded = self.cache.get(self._key(job.model))
        given = whisper.model_language(loaded, job.options.language)
        if given is not None:
            return given, 1.0
        found = faster_whisper_adapter.detect_language(loaded.whisper, samples[: 300 * SAMPLE_RATE])
        return found.code, round(found.probability, 4)

    def live_language_known(self, job: JobRecord) -> bool:
        from cesar_common.transcription import faster_whisper_adapter, whisper

        loaded = self.cache.get(self._key(job.model))
        given = whisper.model_language(loaded, job.options.language)
        return given is not None or not faster_whisper_adapter.is_multilingual(loaded.whisper)

    def live_decoder(self, job: JobRecord, first_audio: np.ndarray) -> LiveDecoder:
        from cesar_common.transcription import streaming

        loaded = self.cache.get(self._key(job.model))
        language, probability = self._language(job, first_audio)
        decode = streaming.whisper_decoder(
            loaded, language=language, task=job.options.task, vad=job.options.vad
        )
        decoding = Decoding(device=loaded.device, compute_type=loaded.compute_type, mode="live", batch_size=1)
        return LiveDecoder(decode, language, probability, decoding)

    def close(self) -> None:
        self.cache.clear()


def _whisper_in_use(loaded: LoadedModel) -> bool:
    """Whether a loaded model's faster-whisper model is held beside it (the model itself, by a live
    decoder's closure say, the cache checks): two references when only ``loaded`` holds it, its own and
    getrefcount's argument."""
    return sys.getrefcount(loaded.whisper) > 2


def job_result(result: Any) -> JobResult:
    """A TranscriptionResult as the plain values the job store writes."""
    return JobResult(
        text=result.text,
        language=result.language,
        language_probability=_float(result.language_probability),
        duration=_float(result.duration),
        segments=result.segments_as_dicts(),
        decoding=Decoding(
            device=result.device,
            compute_type=result.compute_type,
            mode=result.mode,
            batch_size=int(result.batch_size),
        ),
        speakers=result.speakers() if result.diarized else None,
        voices=result.voices,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)

"""Running Whisper on one audio file: decode, optionally clip, transcribe, collect plain results.

faster-whisper is reached through :mod:`faster_whisper_adapter`, imported inside the functions, so importing
this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cesar_common.choices import TASKS
from cesar_common.errors import (
    AudioDecodeError,
    CesarError,
    InvalidInputError,
    LanguageError,
    OutOfMemoryError,
    TranscriptionError,
)
from cesar_common.job_options import DecodingOptions, TranscribeOptions
from cesar_common.transcription import batching, sentences
from cesar_common.transcription.audio import SAMPLE_RATE, DecodeStopped, decode_samples
from cesar_common.transcription.loading import LoadedModel
from cesar_common.transcription.result import Decoded, Segment, TranscriptionResult, Word

if TYPE_CHECKING:
    import numpy as np

    from cesar_common.diarization.backend import Diarizer
    from cesar_common.transcription.faster_whisper_adapter import (
        BatchProgress,
        TranscriptionInfo,
        WhisperSegment,
        WhisperWord,
    )

__all__ = [
    "SAMPLE_RATE",
    "SHORT_AUDIO_SECONDS",
    "DecodeOptions",
    "TranscriptionCancelled",
    "decode",
    "model_language",
    "plan_batch_size",
    "sequential_only",
    "transcribe",
    "validate_options",
]

SEQUENTIAL, BATCHED = "sequential", "batched"  # TranscriptionResult.mode
#: with voice activity detection, when Whisper gets less audio than this to go on (what VAD keeps: its
#: speech, padded by 0.4 s on both sides) and is unsure of all the text it decodes from it, the transcript
#: is empty, as for silence. With so little, its language model fills in: "That's it." from truncated.mp3's
#: 0.4 s of "The qu-" (average log probability -1.03 to -1.21 under the GENERIC, AVX2 and AVX512 kernels,
#: where the telephone call's clear "Hello?" scores -0.37 to -0.88). VAD alone cannot tell them apart: it
#: hears more speech in that clip than in that "Hello?".
SHORT_AUDIO_SECONDS = 1.0

ProgressCallback = Callable[[float, float], None]
SegmentCallback = Callable[[Segment], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    language: str | None = None  # None (or "auto"): detect
    task: str = "transcribe"
    vad: bool = True
    word_timestamps: bool = False
    beam_size: int = 5
    initial_prompt: str | None = None
    start_time: float | None = None  # seconds into the file
    end_time: float | None = None
    batch_size: int = 0  # 0: by device, duration and memory (see batching); 1: never batch; N: N windows
    max_audio_seconds: float | None = None  # longer audio is refused (AudioTooLongError); None: no cap
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    # hotwords, temperature, thresholds, VAD's options, spans
    decoding_options: DecodingOptions = dataclasses.field(default_factory=DecodingOptions)

    @classmethod
    def for_job(cls, options: TranscribeOptions, **decoding: Any) -> DecodeOptions:
        """How to decode for a job's options (every option but the model, which is loaded apart, and the
        naming of speakers, which the worker does from the voice library), with ``decoding`` (beam size,
        times, batch size) on top."""
        wanted = {item.name: getattr(options, item.name) for item in dataclasses.fields(options)}
        for name in _NOT_DECODING:
            del wanted[name]
        return cls(**wanted, **decoding)


_NOT_DECODING = ("model", "name_speakers", "known_speakers")


class TranscriptionCancelled(CesarError):
    """``should_stop`` asked the transcription to stop."""

    status_code = 409
    code = "cancelled"


def transcribe(
    model: LoadedModel,
    audio: str | Path,
    options: DecodeOptions,
    *,
    on_progress: ProgressCallback | None = None,
    on_segment: SegmentCallback | None = None,
    should_stop: StopCheck | None = None,
    diarizer: Diarizer | None = None,
) -> TranscriptionResult:
    """Transcribe ``audio`` (or the part between ``start_time`` and ``end_time``).

    Segment times refer to the original file. ``on_progress(done, total)`` gets audio seconds after
    each segment, ``on_segment`` each segment as soon as it is final; ``should_stop()`` is asked while
    the audio decodes and before each segment, and stops with :class:`TranscriptionCancelled`. In
    batched mode (see :mod:`batching`) a whole batch of windows is decoded before its first segment comes
    out: progress then moves within the batch as its windows are encoded and decoded, and ``should_stop()``
    is also asked at each step of the batch and while its text is generated, so a stop takes effect within
    the batch (see :func:`faster_whisper_adapter.transcribe_batched`).

    With ``options.diarize`` the segments get speakers from ``diarizer`` (default: the bundled one) once
    the transcription is done (``on_segment`` sees them without); progress then covers both steps.
    """
    validate_options(options)
    asked_words = options.word_timestamps
    if options.diarize:
        # speakers are placed word by word
        options = dataclasses.replace(options, word_timestamps=True)
        if on_segment is not None and not asked_words:
            live = on_segment
            on_segment = lambda segment: live(dataclasses.replace(segment, words=None))  # noqa: E731
    language = model_language(model, options.language)
    samples = decode(audio, max_seconds=options.max_audio_seconds, should_stop=should_stop)
    clip, offset = _clip(samples, options)
    total = round(clip.size / SAMPLE_RATE, 3)
    report: ProgressCallback | None = None
    if on_progress is not None:
        report = _never_backwards(on_progress)
        report(0.0, total)
        on_progress = _scaled(report, 1.0 - DIARIZATION_SHARE if options.diarize else 1.0)
    from cesar_common.transcription.faster_whisper_adapter import TranscriptionStopped

    with _engine_errors(model):
        batch_size = plan_batch_size(model, options)
        try:
            raw_segments, info = _start(
                model, clip, options, language, batch_size, _batch_progress(on_progress, total), should_stop
            )
            if options.vad and info.vad_seconds < SHORT_AUDIO_SECONDS:
                raw_segments = _unless_unsure(raw_segments, options.decoding_options.log_prob_threshold)
            segments = _collect(
                raw_segments,
                offset,
                total,
                options,
                on_progress,
                on_segment,
                should_stop,
                split=batch_size > 1,
            )
        except TranscriptionStopped as exc:
            raise TranscriptionCancelled("transcription cancelled") from exc
    voices = None
    if options.diarize:
        labelled, voices = _diarize(clip, offset, segments, options, diarizer, report, total, should_stop)
        segments = list(labelled)
        if not asked_words:
            segments = [dataclasses.replace(segment, words=None) for segment in segments]
    if report is not None:
        report(total, total)
    return TranscriptionResult(
        text=" ".join(segment.text for segment in segments if segment.text),
        language=info.language,
        language_probability=round(float(info.language_probability), 4),
        duration=total,
        segments=tuple(segments),
        model=model.name,
        device=model.device,
        compute_type=model.compute_type,
        mode=BATCHED if batch_size > 1 else SEQUENTIAL,
        batch_size=batch_size,
        voices=voices,
    )


#: the part of a diarized job's progress that diarization takes (it costs about as much as tiny.en)
DIARIZATION_SHARE = 0.4


def _batch_progress(
    on_progress: ProgressCallback | None, total: float
) -> Callable[[BatchProgress], None] | None:
    """``on_progress`` for the batched pipeline's reports from within a batch."""
    if on_progress is None:
        return None
    report = on_progress

    def step(progress: BatchProgress) -> None:
        report(min(progress.done, total), total)

    return step


def _scaled(report: ProgressCallback, share: float) -> ProgressCallback:
    """``report`` for the first step of a job, which takes ``share`` of its progress."""

    def step(done: float, total: float) -> None:
        report(done * share, total)

    return step


def _diarize(
    clip: np.ndarray,
    offset: float,
    segments: list[Segment],
    options: DecodeOptions,
    diarizer: Diarizer | None,
    report: ProgressCallback | None,
    total: float,
    should_stop: StopCheck | None,
) -> tuple[tuple[Segment, ...], dict[str, list[float]] | None]:
    """The segments with speakers, and the speakers' voice prints when the diarizer gives them."""
    from cesar_common.diarization.backend import DiarizationStopped, SpeakerCount, Turn
    from cesar_common.diarization.local import default_diarizer
    from cesar_common.diarization.speakers import label_segments

    count = SpeakerCount(options.num_speakers, options.min_speakers, options.max_speakers)

    def progress(done: float, whole: float) -> None:
        # the diarizer reports a fraction of its own work
        if report is not None and whole > 0:
            report(total * (1.0 - DIARIZATION_SHARE + DIARIZATION_SHARE * done / whole), total)

    chosen = diarizer or default_diarizer()
    # the bundled diarizer also gives voice prints (another backend need not)
    with_voices = getattr(chosen, "diarize_with_voices", None)
    voices = None
    try:
        if with_voices is not None:
            turns, voices = with_voices(clip, count, should_stop=should_stop, on_progress=progress)
        else:
            turns = chosen.diarize(clip, count, should_stop=should_stop, on_progress=progress)
    except DiarizationStopped as exc:
        raise TranscriptionCancelled("the transcription was cancelled") from exc
    shifted = [Turn(turn.start + offset, turn.end + offset, turn.speaker) for turn in turns]
    return label_segments(segments, shifted), voices


def validate_options(options: DecodeOptions) -> None:
    """Refuse options that cannot work, before any audio is decoded."""
    if options.task not in TASKS:
        raise InvalidInputError(f"unknown task {options.task!r}: use transcribe or translate")
    if options.beam_size < 1:
        raise InvalidInputError(f"beam size must be at least 1, not {options.beam_size}")
    if options.batch_size < 0:
        raise InvalidInputError(f"batch size must be 0 (automatic) or more, not {options.batch_size}")
    start, end = options.start_time, options.end_time
    for label, value in (("start time", start), ("end time", end)):
        if value is not None and value < 0:
            raise InvalidInputError(f"{label} must not be negative ({value:g} s)")
    if start is not None and end is not None and start >= end:
        raise InvalidInputError(
            f"start time ({start:g} s) must be before end time ({end:g} s): swap or fix them"
        )
    if options.decoding_options.clip_timestamps and (start is not None or end is not None):
        raise InvalidInputError(
            "clip timestamps and a start or end time both say what to transcribe: give one of them "
            "(clip timestamps are seconds into the file)"
        )
    normalise_language(options.language)


def normalise_language(language: str | None) -> str | None:
    """A Whisper language code, or None to detect; unknown codes are a :class:`LanguageError`."""
    if language is None or language.strip().lower() in ("", "auto"):
        return None
    from cesar_common.transcription.faster_whisper_adapter import LANGUAGE_CODES

    code = language.strip().lower()
    if code not in LANGUAGE_CODES:
        raise LanguageError(
            f"unknown language code {language!r}: use a Whisper code such as en, fr, de, es or zh, "
            "or leave the language out to detect it"
        )
    return code


def decode(
    audio: str | Path, *, max_seconds: float | None = None, should_stop: StopCheck | None = None
) -> np.ndarray:
    """The file's audio as 16 kHz mono float32 samples (see :func:`audio.decode_samples`)."""
    name = Path(audio).name
    try:
        return decode_samples(audio, max_seconds=max_seconds, should_stop=should_stop)
    except DecodeStopped as exc:
        raise TranscriptionCancelled("transcription cancelled while decoding") from exc
    except MemoryError as exc:
        raise OutOfMemoryError(f"not enough memory to decode {name}") from exc
    except OSError as exc:
        raise AudioDecodeError(f"could not read {name} ({exc.strerror or exc})") from exc


def model_language(model: LoadedModel, language: str | None) -> str | None:
    from cesar_common.transcription.faster_whisper_adapter import supported_languages

    code = normalise_language(language)
    if code is not None and code not in supported_languages(model.whisper):
        raise LanguageError(
            f"model {model.name} only transcribes English, not {code!r}: leave the language out "
            "or use a multilingual model (for example small or large-v3)"
        )
    return code


def _clip(samples: np.ndarray, options: DecodeOptions) -> tuple[np.ndarray, float]:
    """The samples between start and end time, and the offset of the first one in seconds."""
    start = options.start_time or 0.0
    full = samples.size / SAMPLE_RATE
    if start >= full:
        raise InvalidInputError(f"start time ({start:g} s) is past the end of the audio ({full:.1f} s)")
    first = round(start * SAMPLE_RATE)
    last = (
        samples.size if options.end_time is None else min(samples.size, round(options.end_time * SAMPLE_RATE))
    )
    return samples[first:last], first / SAMPLE_RATE


def plan_batch_size(model: LoadedModel, options: DecodeOptions) -> int:
    """The batch size ``options`` get on ``model``: 1 is sequential, as it is for options that only
    sequential decoding applies (:func:`sequential_only`)."""
    if sequential_only(options.decoding_options):
        return 1
    requested, vad = options.batch_size, options.vad
    return batching.choose_batch_size(
        requested,
        device=model.device,
        vad=vad,
        model_bytes=model.model_bytes,
        # read only for the auto rule: nvidia-smi takes tens of milliseconds
        free_bytes=batching.free_memory(model) if vad and requested == 0 else None,
    )


def sequential_only(options: DecodingOptions) -> bool:
    """Whether ``options`` need sequential decoding: faster-whisper's batched pipeline decodes each window
    once at the first temperature (no sampling, no fallback), never prompts a window with the text before it,
    and cuts the audio by VAD alone (no spans)."""
    return (
        options.temperature != DecodingOptions().temperature
        or options.condition_on_previous_text
        or bool(options.clip_timestamps)
    )


def _start(
    model: LoadedModel,
    clip: np.ndarray,
    options: DecodeOptions,
    language: str | None,
    batch_size: int,
    on_progress: Callable[[BatchProgress], None] | None,
    should_stop: StopCheck | None,
) -> tuple[Iterator[WhisperSegment], TranscriptionInfo]:
    """Whisper's lazy segments and what it found about the audio, batched when ``batch_size`` > 1.

    Batched segments are whole VAD windows: their words are timed too (about 8% more work on CPU), so
    that :func:`_collect` can cut them into sentences.
    """
    from cesar_common.transcription import faster_whisper_adapter as adapter

    decoding = adapter.Decoding(
        language=language,
        task=options.task,
        beam_size=options.beam_size,
        initial_prompt=options.initial_prompt or None,
        vad=options.vad,
        word_timestamps=options.word_timestamps,
        options=options.decoding_options,
    )
    if batch_size > 1:
        return adapter.transcribe_batched(
            model.whisper,
            clip,
            dataclasses.replace(decoding, word_timestamps=True),
            batch_size=batch_size,
            on_progress=on_progress,
            should_stop=should_stop,
        )
    return adapter.transcribe_sequential(model.whisper, clip, decoding)


def _unless_unsure(raw_segments: Iterator[WhisperSegment], threshold: float) -> Iterator[WhisperSegment]:
    """``raw_segments`` of short audio (see :data:`SHORT_AUDIO_SECONDS`), or none when Whisper is unsure of
    every one (an average log probability under ``threshold``, the job's ``log_prob_threshold``: Whisper's
    own mark of a failed decode, which it would retry by sampling; Cesar samples only when asked). Decoded
    before any is handed out, so a job's live segments never show text it then drops."""
    decoded = list(raw_segments)
    if all(segment.avg_logprob < threshold for segment in decoded):
        return iter(())
    return iter(decoded)


def _never_backwards(on_progress: ProgressCallback) -> ProgressCallback:
    """``on_progress`` that never reports less than it did: a batch reports its span as it is decoded
    (:func:`faster_whisper_adapter.transcribe_batched`), and its segments then come out one by one from
    the start of that span."""
    highest = 0.0

    def report(done: float, total: float) -> None:
        nonlocal highest
        highest = max(highest, done)
        on_progress(highest, total)

    return report


def _collect(
    raw_segments: Iterable[WhisperSegment],
    offset: float,
    total: float,
    options: DecodeOptions,
    on_progress: ProgressCallback | None,
    on_segment: SegmentCallback | None,
    should_stop: StopCheck | None,
    *,
    split: bool,
) -> list[Segment]:
    segments: list[Segment] = []
    pending: deque[Segment] = deque()  # the sentences of a batched window not handed out yet
    iterator = iter(raw_segments)
    clock = _Clock(offset, total)
    try:
        while True:
            if should_stop is not None and should_stop():
                raise TranscriptionCancelled("transcription cancelled")
            if not pending:
                raw = next(iterator, None)
                if raw is None:
                    return segments
                pending.extend(_segments(raw, len(segments), clock, options.word_timestamps, split=split))
            segment = pending.popleft()
            if segments and _is_loop(segment, segments[-1]):
                continue
            if segment.id != len(segments):  # numbered before a loop was dropped
                segment = dataclasses.replace(segment, id=len(segments))
            segments.append(segment)
            if on_segment is not None:
                on_segment(segment)
            if on_progress is not None:
                on_progress(clock.elapsed(segment.end), total)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _is_loop(segment: Segment, previous: Segment) -> bool:
    """A sentence of no duration saying what the one before said: the decoder looping, not speech (seen
    on a phone call's "Hello." under some CPU kernels: three more, each 0 s long)."""
    return segment.end <= segment.start and _plain(segment.text) == _plain(previous.text)


def _plain(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text).lower().strip()


@dataclass(frozen=True, slots=True)
class _Clock:
    """Whisper's times (relative to the clip) as plain floats in the file's time."""

    offset: float
    total: float

    def at(self, value: float) -> float:
        # Whisper rounds to its 20 ms grid and may overshoot the audio's end
        return round(self.offset + min(max(value, 0.0), self.total), 3)

    def elapsed(self, at: float) -> float:
        """Seconds of the clip done at file time ``at``."""
        return min(max(round(at - self.offset, 3), 0.0), self.total)


def _segments(
    raw: WhisperSegment, first_id: int, clock: _Clock, with_words: bool, *, split: bool
) -> list[Segment]:
    """One faster-whisper segment as ours: cut into sentences when ``split`` (batched mode)."""
    raw_words = list(raw.words or ())
    if not (split and raw_words):
        return [
            Segment(
                id=first_id,
                start=clock.at(raw.start),
                end=clock.at(raw.end),
                text=raw.text.strip(),
                words=_words(raw_words, clock) if with_words else None,
                decoded=_decoded(raw, whole=True),
            )
        ]
    pieces = sentences.split_words(raw_words)
    decoded = _decoded(raw, whole=len(pieces) == 1)
    return [
        Segment(
            id=first_id + index,
            start=clock.at(piece[0].start),
            end=clock.at(piece[-1].end),
            text=sentences.piece_text(piece),
            words=_words(piece, clock) if with_words else None,
            decoded=decoded,
        )
        for index, piece in enumerate(pieces)
    ]


def _decoded(raw: WhisperSegment, *, whole: bool) -> Decoded:
    return Decoded(
        seek=raw.seek,
        temperature=round(raw.temperature, 4),
        avg_logprob=round(raw.avg_logprob, 4),
        compression_ratio=round(raw.compression_ratio, 4),
        no_speech_prob=round(raw.no_speech_prob, 4),
        tokens=raw.tokens if whole else None,
    )


def _words(raw_words: Iterable[WhisperWord], clock: _Clock) -> tuple[Word, ...]:
    return tuple(
        Word(
            start=clock.at(word.start),
            end=clock.at(word.end),
            word=word.word.strip(),
            probability=round(word.probability, 4),
        )
        for word in raw_words
    )


@contextmanager
def _engine_errors(model: LoadedModel) -> Iterator[None]:
    """CTranslate2's failures as Cesar errors."""
    try:
        yield
    except MemoryError as exc:
        raise OutOfMemoryError(f"ran out of memory transcribing with model {model.name}") from exc
    except RuntimeError as exc:
        message = str(exc)
        if "out of memory" in message.lower() or "bad_alloc" in message:
            raise OutOfMemoryError(
                f"ran out of memory transcribing with model {model.name} on {model.device}: {message}"
            ) from exc
        raise TranscriptionError(f"transcription failed: {message}") from exc

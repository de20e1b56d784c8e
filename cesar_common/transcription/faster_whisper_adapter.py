"""Everything Cesar uses from faster-whisper, in one module: no other product module imports it.

Model names and downloads, language codes, opening a ``WhisperModel``, voice activity detection, language
detection, and sequential or batched transcription. Segments and words leave here as the small dataclasses
below, of plain Python floats, so the rest of the engine depends on Cesar's types only.

faster-whisper is pinned exactly (pyproject.toml); ``tests/contract/test_faster_whisper_contract.py`` checks
what this module relies on, and ``make contract-newest`` runs it against the newest release.

Importing this module imports faster-whisper (and CTranslate2, NumPy): the rest of the engine imports it
inside the functions that need it, so that ``cesar --help`` and the API stay light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES
from faster_whisper.utils import available_models as _available_models
from faster_whisper.utils import download_model as _download_model
from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

from cesar_common.job_options import DecodingOptions
from cesar_common.transcription.audio import SAMPLE_RATE

__all__ = [
    "BATCHED_MIN_SILENCE_MS",
    "DECODED",
    "ENCODED",
    "LANGUAGE_CODES",
    "LOG_PROB_THRESHOLD",
    "NO_SPEECH_THRESHOLD",
    "SEQUENTIAL_MIN_SILENCE_MS",
    "STARTED",
    "VAD_WINDOW",
    "BatchProgress",
    "Decoding",
    "DetectedLanguage",
    "TranscriptionInfo",
    "TranscriptionStopped",
    "WhisperModel",
    "WhisperSegment",
    "WhisperWord",
    "available_models",
    "detect_language",
    "download_model",
    "is_multilingual",
    "open_model",
    "speech_probabilities",
    "speech_timestamps",
    "supported_languages",
    "transcribe_batched",
    "transcribe_sequential",
]

#: the language codes Whisper knows (en, fr, zh, ...)
LANGUAGE_CODES: frozenset[str] = frozenset(_LANGUAGE_CODES)

#: the samples of 16 kHz audio Silero VAD gives one probability for (32 ms)
VAD_WINDOW = 512

#: the steps of a batch that :func:`transcribe_batched` reports (:attr:`BatchProgress.step`)
STARTED, ENCODED, DECODED = "started", "encoded", "decoded"
#: how far through a batch's span each step is (tiny.en, int8, CPU: encoding took 40-45 % of a batch of the
#: 70 s story, decoding another 45 %, the word alignment the rest). No step says the batch is done: its
#: segments do, as they come out.
_SHARES = {STARTED: 0.0, ENCODED: 0.4, DECODED: 0.85}
#: how often a stop is looked for while CTranslate2 generates a batch's text
_POLL_SECONDS = 0.05
#: Whisper's rule for a window with no speech in it: the model finds speech unlikely (its no-speech
#: probability above this) ...
NO_SPEECH_THRESHOLD = DecodingOptions().no_speech_threshold
#: ... and is unsure of the text it decoded (its average log probability per token below this). OpenAI's
#: and faster-whisper's defaults, a job's own when it gives them (:class:`DecodingOptions`); faster-whisper
#: applies the rule to sequential decoding only, the adapter to batched windows too.
LOG_PROB_THRESHOLD = DecodingOptions().log_prob_threshold
#: the shortest pause that ends a stretch of speech when a job does not say (``vad_min_silence_ms``):
#: faster-whisper's default for sequential decoding (VadOptions') and the batched pipeline's own
SEQUENTIAL_MIN_SILENCE_MS = VadOptions().min_silence_duration_ms
BATCHED_MIN_SILENCE_MS = 160


class TranscriptionStopped(Exception):
    """``should_stop`` asked :func:`transcribe_batched` to stop: raised by its segments' iterator."""


@dataclass(frozen=True, slots=True)
class WhisperWord:
    """A word as Whisper heard it: seconds into the audio it was given."""

    start: float
    end: float
    word: str  # with its leading space, as Whisper spells it
    probability: float


@dataclass(frozen=True, slots=True)
class WhisperSegment:
    """A segment as Whisper decoded it: seconds into the audio it was given."""

    start: float
    end: float
    text: str
    words: tuple[WhisperWord, ...] | None  # None unless word timestamps were asked for
    seek: int
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TranscriptionInfo:
    """What a transcription says about its audio before the first segment."""

    language: str
    language_probability: float
    #: the seconds of audio voice activity detection kept (its speech regions, each padded by 0.4 s on
    #: both sides), or the whole audio's without it
    vad_seconds: float


@dataclass(frozen=True, slots=True)
class DetectedLanguage:
    code: str
    probability: float


@dataclass(frozen=True, slots=True)
class Decoding:
    """What Cesar asks of Whisper; everything else stays at faster-whisper's defaults."""

    language: str | None = None  # None: detect (an English-only model says "en")
    task: str = "transcribe"
    beam_size: int = 5
    initial_prompt: str | None = None
    vad: bool = True
    word_timestamps: bool = False
    #: the job's decoding options (hotwords, temperature, thresholds, VAD's, spans)
    options: DecodingOptions = field(default_factory=DecodingOptions)


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """How far :func:`transcribe_batched` has got: seconds of the audio done, after ``step`` of a batch."""

    done: float
    step: str  # STARTED, ENCODED or DECODED


def available_models() -> tuple[str, ...]:
    """The model names faster-whisper knows how to download (tiny.en, large-v3, ...)."""
    return tuple(_available_models())


def download_model(name: str, *, local_files_only: bool = False, output_dir: str | None = None) -> str:
    """The directory of model ``name`` (a faster-whisper name or a Hub ``owner/repo``), downloaded if need be.

    huggingface_hub's errors pass through: the caller says what they mean.
    """
    return str(_download_model(name, local_files_only=local_files_only, output_dir=output_dir))


def open_model(path: str, *, device: str, compute_type: str, threads: int) -> WhisperModel:
    """The CTranslate2 Whisper model in directory ``path``; ``threads`` 0 is CTranslate2's default."""
    return WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads)


def is_multilingual(model: WhisperModel) -> bool:
    return bool(model.model.is_multilingual)


def supported_languages(model: WhisperModel) -> tuple[str, ...]:
    """The language codes ``model`` transcribes: only "en" for an English-only model."""
    return tuple(str(code) for code in model.supported_languages)


def speech_timestamps(samples: np.ndarray, *, min_silence_ms: int, pad_ms: int) -> list[tuple[int, int]]:
    """Where someone speaks in 16 kHz mono ``samples``, as (start, end) sample indices, by Silero VAD:
    pauses shorter than ``min_silence_ms`` do not separate speech, and each region is padded by ``pad_ms``."""
    options = VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms)
    found = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [(int(item["start"]), int(item["end"])) for item in found if item["end"] > item["start"]]


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero VAD's probability that each window of :data:`VAD_WINDOW` samples of 16 kHz mono ``samples``
    (a whole number of windows) holds speech."""
    return np.asarray(get_vad_model()(samples), dtype=np.float32).reshape(-1)


def detect_language(model: WhisperModel, samples: np.ndarray) -> DetectedLanguage:
    """The language spoken in the first 30 s of speech of ``samples``; "en" for an English-only model (what
    faster-whisper's transcriptions say too: such a model cannot tell languages apart)."""
    if not is_multilingual(model):
        return DetectedLanguage("en", 1.0)
    code, probability, _ = model.detect_language(audio=samples, vad_filter=True)
    return DetectedLanguage(str(code), float(probability))


def transcribe_sequential(
    model: WhisperModel, samples: np.ndarray, decoding: Decoding
) -> tuple[Iterator[WhisperSegment], TranscriptionInfo]:
    """Whisper's own 30 s windows one after the other; segments come out lazily, as each is decoded.

    The language is detected (or checked) before this returns; closing the iterator stops the decoding.
    """
    options = decoding.options
    temperatures = list(options.temperature)
    raw, info = model.transcribe(
        samples,
        vad_filter=decoding.vad,
        **_shared(decoding, batched=False),
        # Each window prompted with the previous one's text, some CPU kernel sets made tiny.en read a
        # story's earlier chapter again in place of the audio, or decode a call's last line twice.
        # Without it, and without the temperature fallback's unseeded sampling (CTranslate2 seeds its
        # generator once per thread), the text is the same under every kernel set and on every run: so
        # both are off unless a job asks for them.
        condition_on_previous_text=options.condition_on_previous_text,
        temperature=temperatures if len(temperatures) > 1 else temperatures[0],
        compression_ratio_threshold=options.compression_ratio_threshold,
        # start,end pairs in seconds (VAD is then skipped); "0": the whole audio
        clip_timestamps=list(options.clip_timestamps) or "0",
    )
    return _plain_segments(raw), _info(info)


def _shared(decoding: Decoding, *, batched: bool) -> dict[str, Any]:
    """faster-whisper's arguments for ``decoding`` that both modes take alike."""
    options = decoding.options
    return {
        "language": decoding.language,
        "task": decoding.task,
        "beam_size": decoding.beam_size,
        "initial_prompt": decoding.initial_prompt,
        "word_timestamps": decoding.word_timestamps,
        "hotwords": options.hotwords,
        "repetition_penalty": options.repetition_penalty,
        "no_repeat_ngram_size": options.no_repeat_ngram_size,
        "suppress_tokens": list(options.suppress_tokens),
        "no_speech_threshold": options.no_speech_threshold,
        "log_prob_threshold": options.log_prob_threshold,
        "vad_parameters": _vad_parameters(options, batched=batched),
    }


def _vad_parameters(options: DecodingOptions, *, batched: bool) -> dict[str, Any] | None:
    """Silero VAD's options for the job; None (faster-whisper's own, which differ by mode) unless it sets
    one."""
    defaults = DecodingOptions()
    tuned = (options.vad_threshold, options.vad_min_silence_ms, options.vad_speech_pad_ms)
    if tuned == (defaults.vad_threshold, defaults.vad_min_silence_ms, defaults.vad_speech_pad_ms):
        return None
    default_silence = BATCHED_MIN_SILENCE_MS if batched else SEQUENTIAL_MIN_SILENCE_MS
    return {
        "threshold": options.vad_threshold,
        "min_silence_duration_ms": (
            default_silence if options.vad_min_silence_ms is None else options.vad_min_silence_ms
        ),
        "speech_pad_ms": options.vad_speech_pad_ms,
    }


def transcribe_batched(
    model: WhisperModel,
    samples: np.ndarray,
    decoding: Decoding,
    *,
    batch_size: int,
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Iterator[WhisperSegment], TranscriptionInfo]:
    """faster-whisper's batched pipeline: the audio cut at pauses into windows of up to 30 s, ``batch_size``
    windows decoded in one pass. VAD is always on here (the pipeline needs it to cut). A window Whisper's
    rule finds silent (the job's ``no_speech_threshold`` and ``log_prob_threshold``) gives no segments, as
    in sequential decoding (the pipeline itself keeps them). The pipeline decodes each window once, at the
    first temperature, unprompted by the window before, and ignores spans: a job that asks otherwise
    (:func:`whisper.plan_batch_size`) is decoded sequentially.

    A batch's segments come out only once the whole batch is decoded, so each batch reports its span of the
    audio as it goes (``on_progress``, in the audio's time): at its start, once encoded and once its text is
    generated. ``should_stop`` is asked before encoding, before generating, every :data:`_POLL_SECONDS`
    while CTranslate2 generates (asynchronously), and before the word alignment: a stop takes effect at the
    next step, and the iterator raises :class:`TranscriptionStopped`. A batch abandoned while generating is
    finished by CTranslate2 in its own threads, its results unused (the next call on the model waits for
    it).

    Each call builds its own pipeline (cheap: it holds only the model), so nothing of one transcription, not
    even a stopped one, carries into the next.
    """
    watch = _Watch(on_progress, should_stop)
    pipeline = _SpanPipeline(_WatchedModel(model, watch), watch)
    raw, info = pipeline.transcribe(
        samples,
        vad_filter=True,
        batch_size=batch_size,
        temperature=decoding.options.temperature[0],
        **_shared(decoding, batched=True),
    )
    return _plain_segments(raw, silent_by=decoding.options), _info(info)


class _Watch:
    """One batched transcription's progress reports and stop checks, shared by the pipeline and its model."""

    def __init__(
        self, on_progress: Callable[[BatchProgress], None] | None, should_stop: Callable[[], bool] | None
    ) -> None:
        self._on_progress = on_progress
        self._should_stop = should_stop
        self._span = (0.0, 0.0)

    def begin(self, start: float, end: float) -> None:
        self._span = (start, end)
        self.report(STARTED)

    def report(self, step: str) -> None:
        if self._on_progress is not None:
            start, end = self._span
            self._on_progress(BatchProgress(start + _SHARES[step] * (end - start), step))

    def check(self) -> None:
        if self._should_stop is not None and self._should_stop():
            raise TranscriptionStopped("asked to stop")


class _WatchedGenerator:
    """The CTranslate2 model as the pipeline sees it: ``generate`` runs asynchronously and is watched."""

    def __init__(self, model: Any, watch: _Watch) -> None:
        self._model = model
        self._watch = watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, *args: Any, **kwargs: Any) -> list[Any]:
        pending = self._model.generate(*args, asynchronous=True, **kwargs)
        # a thread waits for the results, so this one looks at the stop every little while and still
        # returns the moment they are there (polling done() would add up to a poll's delay to every batch)
        ready = threading.Event()
        results: list[Any] = []
        failure: list[BaseException] = []

        def wait() -> None:
            try:
                results.extend(result.result() for result in pending)
            except BaseException as exc:  # handed to the decoding thread below
                failure.append(exc)
            finally:
                ready.set()

        threading.Thread(target=wait, name="cesar-generate", daemon=True).start()
        while not ready.wait(_POLL_SECONDS):
            self._watch.check()
        self._watch.check()  # a stop that came while generating wins over the results
        if failure:
            raise failure[0]
        self._watch.report(DECODED)
        return results


class _WatchedModel:
    """The WhisperModel as the pipeline sees it: encoding and generating report progress and check the stop,
    aligning words checks it; everything else is the model's own."""

    def __init__(self, model: WhisperModel, watch: _Watch) -> None:
        self._whisper = model
        self._watch = watch
        self.model = _WatchedGenerator(model.model, watch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._whisper, name)

    def encode(self, features: np.ndarray) -> Any:
        self._watch.check()
        output = self._whisper.encode(features)
        self._watch.report(ENCODED)
        self._watch.check()
        return output

    def add_word_timestamps(self, *args: Any, **kwargs: Any) -> Any:
        self._watch.check()
        return self._whisper.add_word_timestamps(*args, **kwargs)


class _SpanPipeline(BatchedInferencePipeline):  # type: ignore[misc]
    """The batched pipeline, telling the watch which span of the audio each batch covers."""

    def __init__(self, model: _WatchedModel, watch: _Watch) -> None:
        super().__init__(model=model)
        self._watch = watch

    def forward(self, features: Any, tokenizer: Any, chunks_metadata: Any, options: Any) -> Any:
        # each window lists the speech regions (sample indices in the audio) it was cut from
        regions = [region for chunk in chunks_metadata for region in chunk["segments"]]
        if regions:
            self._watch.begin(regions[0]["start"] / SAMPLE_RATE, regions[-1]["end"] / SAMPLE_RATE)
        return super().forward(features, tokenizer, chunks_metadata, options)


def _info(info: Any) -> TranscriptionInfo:
    return TranscriptionInfo(
        str(info.language), float(info.language_probability), float(info.duration_after_vad)
    )


def _plain_segments(
    raw: Iterable[Any], *, silent_by: DecodingOptions | None = None
) -> Iterator[WhisperSegment]:
    """faster-whisper's lazy segments as ours, without those of windows silent by the thresholds of
    ``silent_by`` when given; closing this closes faster-whisper's generator."""
    iterator = iter(raw)
    try:
        for segment in iterator:
            plain = _segment(segment)
            if silent_by is None or not _silent(plain, silent_by):
                yield plain
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _silent(segment: WhisperSegment, options: DecodingOptions) -> bool:
    """Whether Whisper's rule, with the job's thresholds, finds the window ``segment`` came from silent
    (faster-whisper's test, from ``generate_segments``)."""
    return (
        segment.no_speech_prob > options.no_speech_threshold
        and segment.avg_logprob < options.log_prob_threshold
    )


def _segment(raw: Any) -> WhisperSegment:
    return WhisperSegment(
        start=float(raw.start),
        end=float(raw.end),
        text=str(raw.text),
        words=None if raw.words is None else tuple(_word(word) for word in raw.words),
        seek=int(raw.seek),
        temperature=float(raw.temperature or 0.0),
        avg_logprob=float(raw.avg_logprob),
        compression_ratio=float(raw.compression_ratio),
        no_speech_prob=float(raw.no_speech_prob),
        tokens=tuple(int(token) for token in raw.tokens),
    )


def _word(raw: Any) -> WhisperWord:
    return WhisperWord(float(raw.start), float(raw.end), str(raw.word), float(raw.probability))

"""The contract between Cesar and faster-whisper: what ``faster_whisper_adapter`` relies on, checked for real
with the bundled tiny.en on fixture audio (one model load for the module, short audio, greedy decoding).

`make test` runs it with the pinned release; `make contract-newest` runs it alone with the newest
faster-whisper and CTranslate2 on PyPI. Each check's message names the release and what it no longer does.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faster_whisper import BatchedInferencePipeline
from faster_whisper.vad import VadOptions

from cesar.supervisor.layout import FAMILY_BYTES, model_family
from cesar_common.choices import WHISPER_LANGUAGES
from cesar_common.job_options import DecodingOptions
from cesar_common.transcription import faster_whisper_adapter as adapter
from cesar_common.transcription.audio import SAMPLE_RATE, decode_samples
from cesar_common.transcription.faster_whisper_adapter import DECODED, ENCODED, STARTED
from cesar_common.transcription.loading import resolve_model

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
RELEASE = f"faster-whisper {version('faster-whisper')} with CTranslate2 {version('ctranslate2')}"
GREEDY = adapter.Decoding(beam_size=1, word_timestamps=True)
BATCH_STEPS = [STARTED, ENCODED, DECODED]
PAUSE_MS, PAD_MS = 300, 100  # what cesar_common.transcription.cuts asks


@pytest.fixture(scope="module")
def model() -> Any:
    path = resolve_model("tiny.en", offline=True)
    return adapter.open_model(path, device="cpu", compute_type="int8", threads=0)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """7 s of speech: one window, so one batch."""
    return decode_samples(AUDIO / "speech_en.wav")


@pytest.fixture(scope="module")
def two_windows() -> np.ndarray:
    """The story's first 35 s: more speech than one 30 s window holds."""
    return decode_samples(AUDIO / "speech_en_long.flac")[: 35 * SAMPLE_RATE]


class CountedGenerator:
    """The CTranslate2 model under the WhisperModel, counting the generate() calls that reach it;
    ``on_generate`` runs once CTranslate2 has been asked (asynchronously: before it is done)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0
        self.on_generate: Callable[[], None] = lambda: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        results = self.real.generate(*args, **kwargs)
        self.on_generate()
        return results


@pytest.fixture
def generator(model: Any, monkeypatch: pytest.MonkeyPatch) -> CountedGenerator:
    counted = CountedGenerator(model.model)
    monkeypatch.setattr(model, "model", counted)
    return counted


@dataclass
class Run:
    """What one batched transcription reported and gave before it ended or stopped."""

    reports: list[adapter.BatchProgress] = field(default_factory=list)
    segments: list[adapter.WhisperSegment] = field(default_factory=list)
    stopped: bool = False

    @property
    def steps(self) -> list[str]:
        return [report.step for report in self.reports]


def batched(
    model: Any,
    samples: np.ndarray,
    *,
    batch_size: int = 4,
    stop_at: tuple[str, int] | None = None,
    stop: threading.Event | None = None,
) -> Run:
    """Transcribe ``samples`` batched; ``stop_at`` (step, n): the stop is set from that step's n-th report."""
    run = Run()
    stop = stop or threading.Event()

    def progress(report: adapter.BatchProgress) -> None:
        run.reports.append(report)
        if stop_at is not None and (report.step, run.steps.count(report.step)) == stop_at:
            stop.set()

    segments, _ = adapter.transcribe_batched(
        model, samples, GREEDY, batch_size=batch_size, on_progress=progress, should_stop=stop.is_set
    )
    try:
        run.segments.extend(segments)
    except adapter.TranscriptionStopped:
        run.stopped = True
    return run


def text(segments: list[adapter.WhisperSegment]) -> str:
    return " ".join(segment.text for segment in segments).lower()


def test_what_the_batched_adapter_hooks_into_is_still_there(model: Any) -> None:
    # the pipeline's forward() and the model's methods the adapter's proxy replaces (CTranslate2's
    # asynchronous generate() is run by every batched transcription below)
    forward = list(inspect.signature(BatchedInferencePipeline.forward).parameters)
    assert forward == ["self", "features", "tokenizer", "chunks_metadata", "options"], (
        f"{RELEASE}: BatchedInferencePipeline.forward takes {forward}"
    )
    for method in ("encode", "add_word_timestamps"):
        assert callable(getattr(model, method, None)), f"{RELEASE}: WhisperModel has no {method}()"


def test_model_names_include_the_ones_cesar_names() -> None:
    names = adapter.available_models()
    assert {"tiny.en", "large-v3"} <= set(names), f"{RELEASE} names its models {names}"


def test_every_model_name_has_a_size_for_the_worker_layout() -> None:
    # `cesar serve` sizes its workers by a model's family before the model is downloaded
    unsized = [name for name in adapter.available_models() if model_family(name) not in FAMILY_BYTES]
    assert unsized == [], f"{RELEASE} knows models of no family in cesar.supervisor.layout.FAMILY_BYTES"


def test_language_codes_are_the_ones_cesar_lists() -> None:
    codes = adapter.LANGUAGE_CODES
    assert {"en", "fr", "de", "es", "zh", "ja"} <= codes, f"{RELEASE} has language codes {sorted(codes)}"
    added, dropped = sorted(codes - WHISPER_LANGUAGES), sorted(WHISPER_LANGUAGES - codes)
    assert (added, dropped) == ([], []), (
        f"{RELEASE} added {added} and dropped {dropped} language codes: update "
        "cesar_common.choices.WHISPER_LANGUAGE_NAMES"
    )


def test_voice_activity_detection_finds_speech_and_only_speech(speech: np.ndarray) -> None:
    regions = adapter.speech_timestamps(speech, min_silence_ms=PAUSE_MS, pad_ms=PAD_MS)
    assert regions, f"{RELEASE}: VAD found no speech in speech_en.wav"
    assert all(type(start) is int and 0 <= start < end <= speech.size for start, end in regions), regions
    silence = decode_samples(AUDIO / "silence.wav")
    found = adapter.speech_timestamps(silence, min_silence_ms=PAUSE_MS, pad_ms=PAD_MS)
    assert found == [], f"{RELEASE}: VAD found speech in silence.wav"


def test_both_modes_say_how_much_audio_vad_kept(model: Any, speech: np.ndarray) -> None:
    duration = speech.size / SAMPLE_RATE
    silence = decode_samples(AUDIO / "silence.wav")
    for mode, run in (
        ("sequential", lambda samples: adapter.transcribe_sequential(model, samples, GREEDY)),
        ("batched", lambda samples: adapter.transcribe_batched(model, samples, GREEDY, batch_size=4)),
    ):
        segments, info = run(speech)
        assert 0.5 * duration < info.vad_seconds <= duration, f"{RELEASE} {mode}: VAD kept {info.vad_seconds}"
        assert list(segments), f"{RELEASE} {mode} heard nothing"
        segments, info = run(silence)
        assert info.vad_seconds == 0.0 and list(segments) == [], f"{RELEASE} {mode}: speech in silence"


def test_a_window_whisper_finds_silent_gives_nothing_in_either_mode(model: Any, speech: np.ndarray) -> None:
    """0.6 s around "fast": no-speech probability 0.77, average log probability -1.3 (greedy). Sequential
    decoding drops such a window; the batched pipeline keeps it, the adapter does not."""
    clip = np.ascontiguousarray(speech[int(5.4 * SAMPLE_RATE) : int(6.0 * SAMPLE_RATE)])
    raw, _ = BatchedInferencePipeline(model).transcribe(clip, beam_size=1, batch_size=4)
    kept = list(raw)
    assert kept, f"{RELEASE}: the batched pipeline drops silent windows itself (the adapter need not)"
    silent = [
        segment.no_speech_prob > adapter.NO_SPEECH_THRESHOLD
        and segment.avg_logprob < adapter.LOG_PROB_THRESHOLD
        for segment in kept
    ]
    assert all(silent), f"{RELEASE}: the clip is no longer a silent window to Whisper: {kept}"
    segments, _ = adapter.transcribe_sequential(model, clip, GREEDY)
    assert list(segments) == [], f"{RELEASE}: sequential decoding kept a silent window"
    segments, _ = adapter.transcribe_batched(model, clip, GREEDY, batch_size=4)
    assert list(segments) == []


def test_the_decoding_options_default_to_what_faster_whisper_does_without_them() -> None:
    """A job without decoding options decodes as before they existed: where Cesar keeps faster-whisper's
    default, the two agree (temperature and conditioning are Cesar's own: 0 and off)."""
    takes = inspect.signature(adapter.WhisperModel.transcribe).parameters
    ours = DecodingOptions()
    for name in ("no_speech_threshold", "log_prob_threshold", "compression_ratio_threshold",
                 "repetition_penalty", "no_repeat_ngram_size", "hotwords"):  # fmt: skip
        assert takes[name].default == getattr(ours, name), (
            f"{RELEASE}: {name} defaults to {takes[name].default}"
        )
    assert takes["suppress_tokens"].default == list(ours.suppress_tokens), f"{RELEASE}: suppress_tokens"
    vad = VadOptions()
    assert (vad.threshold, vad.speech_pad_ms, vad.min_silence_duration_ms) == (
        ours.vad_threshold, ours.vad_speech_pad_ms, adapter.SEQUENTIAL_MIN_SILENCE_MS
    ), f"{RELEASE}: VAD's defaults are {vad}"  # fmt: skip
    batched = inspect.getsource(BatchedInferencePipeline.transcribe).replace(" ", "")
    assert f"min_silence_duration_ms={adapter.BATCHED_MIN_SILENCE_MS}" in batched, (
        f"{RELEASE}: the batched pipeline's shortest pause is not {adapter.BATCHED_MIN_SILENCE_MS} ms"
    )


def test_an_english_only_model_says_so(model: Any) -> None:
    assert adapter.is_multilingual(model) is False, f"{RELEASE} takes tiny.en for a multilingual model"
    assert adapter.supported_languages(model) == ("en",), f"{RELEASE}: tiny.en speaks more than English"


def test_language_detection_on_speech(model: Any, speech: np.ndarray) -> None:
    found = adapter.detect_language(model, speech)
    assert (found.code, found.probability) == ("en", 1.0), f"{RELEASE}: tiny.en detected {found}"
    # a multilingual model goes on to WhisperModel.detect_language (none is at hand offline to run it)
    takes = inspect.signature(adapter.WhisperModel.detect_language).parameters
    assert {"audio", "vad_filter"} <= set(takes), f"{RELEASE}: detect_language takes {list(takes)}"


def test_sequential_transcription_gives_timed_words_as_plain_floats(model: Any, speech: np.ndarray) -> None:
    segments, info = adapter.transcribe_sequential(model, speech, GREEDY)
    assert (info.language, info.language_probability) == ("en", 1.0), f"{RELEASE} says {info}"
    found = list(segments)
    assert "lazy" in text(found), f"{RELEASE} heard {text(found)!r}"
    words = [word for segment in found for word in segment.words or ()]
    assert words, f"{RELEASE} gave no word timestamps"
    duration = speech.size / SAMPLE_RATE
    for segment in found:
        numbers = (segment.start, segment.end, segment.avg_logprob, segment.compression_ratio)
        numbers += (segment.no_speech_prob, segment.temperature)
        assert all(type(number) is float for number in numbers), f"{RELEASE}: not plain floats in {segment}"
        assert type(segment.seek) is int and all(type(token) is int for token in segment.tokens), segment
    for word in words:
        assert all(type(number) is float for number in (word.start, word.end, word.probability)), word
        assert 0.0 <= word.start <= word.end <= duration + 0.1 and 0.0 <= word.probability <= 1.0, word


def test_batched_progress_moves_inside_each_batch_and_never_backwards(
    model: Any, two_windows: np.ndarray, generator: CountedGenerator
) -> None:
    run = batched(model, two_windows, batch_size=1)
    assert not run.stopped and "chapter" in text(run.segments), f"{RELEASE} heard {text(run.segments)!r}"
    assert run.steps == BATCH_STEPS * 2, f"{RELEASE}: two batches of one window reported {run.steps}"
    assert generator.calls == 2, f"{RELEASE}: two batches asked CTranslate2 {generator.calls} times"
    done = [report.done for report in run.reports]
    assert done == sorted(done), f"{RELEASE}: progress went backwards: {done}"
    for first in (0, 3):  # each batch's steps move through its span of the audio
        batch = done[first : first + 3]
        assert batch == sorted(set(batch)), f"{RELEASE}: progress stood still within a batch: {done}"
    assert done[0] >= 0.0 and done[-1] <= 35.0, f"{RELEASE}: progress {done} is not in the audio's 35 s"
    words = [word for segment in run.segments for word in segment.words or ()]
    assert words and all(type(word.start) is float for word in words), f"{RELEASE}: batched words {words}"


@pytest.mark.parametrize(("step", "generated"), [(STARTED, 0), (ENCODED, 0), (DECODED, 1)])
def test_a_stop_during_a_batch_takes_effect_at_its_next_step(
    model: Any, speech: np.ndarray, generator: CountedGenerator, step: str, generated: int
) -> None:
    # started: nothing is encoded; encoded: the text is never generated; decoded: the words are never
    # aligned (the segments would come out once they were)
    run = batched(model, speech, stop_at=(step, 1))
    assert run.stopped, f"{RELEASE}: a stop set at {step!r} went unseen until the batch was done"
    assert run.steps == BATCH_STEPS[: BATCH_STEPS.index(step) + 1], (
        f"{RELEASE}: the batch went on: {run.steps}"
    )
    assert (generator.calls, run.segments) == (generated, []), (
        f"{RELEASE}: after a stop at {step!r}, {generator.calls} generate() calls, segments {run.segments}"
    )


def test_a_stop_while_generating_returns_at_once(
    model: Any, speech: np.ndarray, generator: CountedGenerator
) -> None:
    stop = threading.Event()
    generator.on_generate = stop.set  # CTranslate2 has just been asked for the batch's text
    run = batched(model, speech, stop=stop)
    assert run.stopped, f"{RELEASE}: a stop while CTranslate2 generated waited for the batch"
    assert run.steps == [STARTED, ENCODED] and run.segments == [], (
        f"{RELEASE}: the batch went on: {run.steps}"
    )


def test_a_run_after_stopped_runs_is_a_clean_run(
    model: Any, two_windows: np.ndarray, generator: CountedGenerator
) -> None:
    clean = batched(model, two_windows, batch_size=1)
    # stopped once the first batch's words were aligned (faster-whisper's pipeline then holds the last
    # word's time), then while CTranslate2 generated (it finishes that batch in its own threads)
    assert batched(model, two_windows, batch_size=1, stop_at=(STARTED, 2)).stopped, f"{RELEASE}: not stopped"
    stop = threading.Event()
    generator.on_generate = stop.set
    assert batched(model, two_windows, batch_size=1, stop=stop).stopped, f"{RELEASE}: not stopped"
    generator.on_generate = lambda: None
    again = batched(model, two_windows, batch_size=1)
    assert again.segments == clean.segments, f"{RELEASE}: a stopped run changed the next run's transcript"


def test_a_batch_of_one_encodes_a_buffer_under_30_s_once_and_times_its_words(
    model: Any, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a live pass (cesar_common.transcription.streaming) relies on it: one encoder pass per buffer
    encodes = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda features: encodes.append(1) or encode(features))
    cut = speech[: int(4.3 * SAMPLE_RATE)]  # cut mid-speech, as a live buffer is
    decoding = adapter.Decoding(language="en", word_timestamps=True, initial_prompt="The quick brown fox")
    segments, _ = adapter.transcribe_batched(model, cut, decoding, batch_size=1)
    words = [word for segment in segments for word in segment.words or ()]
    assert len(encodes) == 1
    assert "lazy" in "".join(word.word for word in words).lower()
    assert all(0 <= word.start <= word.end <= cut.size / SAMPLE_RATE + 0.05 for word in words)

"""Accuracy guard and batched mode, for real: the bundled tiny.en on the long story.

The word error rate of speech_en_long.flac against the reference text in the fixtures README must stay
at most MAX_WER with the settings `cesar transcribe` uses when given no options. Batched mode must keep
progress, cancellation, word timestamps and clipping working, and say that it ran.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from wer import reference_from_readme, word_error_rate

from cesar.transcribe_file import run_transcribe
from cesar_common.settings import reset_settings_cache
from cesar_common.transcription import sentences
from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.result import Segment, TranscriptionResult
from cesar_common.transcription.whisper import DecodeOptions, TranscriptionCancelled, transcribe

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
LONG = AUDIO / "speech_en_long.flac"
LONG_SECONDS = 69.7
# measured on a 2-core CPU: 0.10-0.11 batched (the default), 0.11-0.15 sequential (test_cpu_kernels.py)
MAX_WER = 0.20


@pytest.fixture(scope="module")
def reference() -> str:
    return reference_from_readme((AUDIO / "README.md").read_text(encoding="utf-8"), "speech_en_long")


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment of someone who configured nothing."""
    for name in [name for name in os.environ if name.startswith("CESAR_") and "TEST" not in name]:
        monkeypatch.delenv(name)
    reset_settings_cache()
    yield
    reset_settings_cache()


def _all_words(result: TranscriptionResult) -> list[tuple[float, float, str]]:
    return [(w.start, w.end, w.word) for segment in result.segments for w in segment.words or ()]


@pytest.mark.usefixtures("default_settings")
@pytest.mark.parametrize("batch_size", [None, 1], ids=["defaults", "sequential"])
def test_word_error_rate_of_the_long_story(tmp_path: Path, reference: str, batch_size: int | None) -> None:
    # exactly `cesar transcribe speech_en_long.flac -o story.txt` (with --batch-size 1 for the other mode)
    result = run_transcribe(LONG, output=tmp_path / "story.txt", quiet=True, batch_size=batch_size)
    wer = word_error_rate(reference, (tmp_path / "story.txt").read_text(encoding="utf-8"))
    assert wer <= MAX_WER, f"WER {wer:.3f} > {MAX_WER} ({result.mode}): {result.text}"
    if batch_size is None:  # a 70 s file is batched by default, on CPU as on CUDA
        assert (result.mode, result.batch_size) == ("batched", 4 if result.device == "cpu" else 16)
    else:
        assert (result.mode, result.batch_size) == ("sequential", 1)


def test_a_short_file_is_batched_too(model: LoadedModel) -> None:
    # one window, nothing to batch, the same time either way: batched for the same text on every CPU
    result = transcribe(model, AUDIO / "speech_en.wav", DecodeOptions(beam_size=1))
    assert (result.mode, result.batch_size) == ("batched", 4)
    assert result.to_dict()["mode"] == "batched"
    assert "lazy" in result.text.lower() and all(segment.words is None for segment in result.segments)


def test_batched_progress_words_and_sentences(model: LoadedModel) -> None:
    progress: list[tuple[float, float]] = []
    result = transcribe(
        model,
        LONG,
        DecodeOptions(batch_size=2, word_timestamps=True, beam_size=1),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert (result.mode, result.batch_size) == ("batched", 2)
    assert result.to_dict()["mode"] == "batched" and result.to_dict()["batch_size"] == 2
    assert result.duration == pytest.approx(LONG_SECONDS, abs=0.1)
    assert result.text.lower().count("chapter") >= 4

    # progress: from 0 to the end, never backwards, and somewhere in between (three windows, two batches)
    total = result.duration
    assert progress[0] == (0.0, total) and progress[-1] == (total, total)
    done = [d for d, _ in progress]
    assert done == sorted(done) and any(0 < d < total for d in done)

    # the windows came back cut into sentences, each with its words, in order and inside it
    assert len(result.segments) >= 8
    assert all(s.end - s.start <= sentences.MAX_SECONDS + 2 for s in result.segments)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    words = _all_words(result)
    assert len(words) > 150 and [w[0] for w in words] == sorted(w[0] for w in words)
    for segment in result.segments:
        assert segment.words and segment.text.split()[0].lower() == segment.words[0].word.lower()
        for word in segment.words:
            assert segment.start <= word.start <= word.end <= segment.end <= total
            assert type(word.start) is float and 0.0 <= word.probability <= 1.0


def test_batched_without_word_timestamps_has_no_words(model: LoadedModel) -> None:
    result = transcribe(model, LONG, DecodeOptions(batch_size=8, beam_size=1, start_time=20, end_time=50))
    assert result.mode == "batched"
    assert result.segments and all(segment.words is None for segment in result.segments)
    assert "words" not in result.to_dict()["segments"][0]
    # clipping: 30 s of audio, times still in the file's clock
    assert result.duration == pytest.approx(30.0, abs=0.01)
    assert all(20.0 <= s.start < s.end <= 50.0 for s in result.segments)
    assert "chapter" in result.text.lower()


def test_batched_cancellation_between_batches_leaves_the_next_run_intact(model: LoadedModel) -> None:
    # the first 40 s: two windows in one batch
    options = DecodeOptions(batch_size=2, word_timestamps=True, beam_size=1, end_time=40)
    before = _all_words(transcribe(model, LONG, options))
    seen: list[float] = []
    segments: list[Segment] = []
    with pytest.raises(TranscriptionCancelled):
        transcribe(
            model,
            LONG,
            options,
            on_progress=lambda done, _total: seen.append(done),
            on_segment=segments.append,
            should_stop=lambda: len(segments) > 0,  # after the first window's first segment
        )
    # the batch reported its progress as it was encoded and decoded, then one segment came out
    assert len(segments) == 1 and seen == sorted(seen) and any(0 < done < 40 for done in seen)
    # faster-whisper's batched pipeline carries the last word's time from batch to batch and resets it
    # only when a run ends: each run has a pipeline of its own, so the stopped one cannot skew these words
    assert _all_words(transcribe(model, LONG, options)) == before


def test_a_stop_within_a_batch_takes_effect_at_its_next_step(model: LoadedModel) -> None:
    # three windows in one batch: the stop comes once they are encoded, and none of them is decoded
    stop = threading.Event()
    seen: list[float] = []

    def progress(done: float, total: float) -> None:
        seen.append(done)
        if 0 < done < total:
            stop.set()

    segments: list[Segment] = []
    with pytest.raises(TranscriptionCancelled):
        transcribe(
            model,
            LONG,
            DecodeOptions(batch_size=4, beam_size=1),
            on_progress=progress,
            on_segment=segments.append,
            should_stop=stop.is_set,
        )
    assert segments == [] and len([done for done in seen if done > 0]) == 1


def test_batched_silence_is_empty(model: LoadedModel) -> None:
    result = transcribe(model, AUDIO / "silence.wav", DecodeOptions(batch_size=8))
    assert (result.text, result.segments, result.mode) == ("", (), "batched")


def test_sequential_cancellation_still_stops_between_segments(model: LoadedModel) -> None:
    seen: list[float] = []
    with pytest.raises(TranscriptionCancelled):
        transcribe(
            model,
            LONG,
            DecodeOptions(batch_size=1, beam_size=1),
            on_progress=lambda done, _total: seen.append(done),
            should_stop=lambda: len(seen) > 1,
        )
    assert len(seen) == 2 and 0 < seen[1] < 15  # one sequential segment is a few seconds

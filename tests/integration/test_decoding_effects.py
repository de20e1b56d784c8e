"""Each decoding option changes what it should, for real: the bundled tiny.en on the audio fixtures, through
Cesar's engine (``DecodeOptions`` as a job's options make them, the adapter, faster-whisper). One model load
for the module; each file decoded with the defaults once (the baselines) and once per option."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cesar_common.job_options import DecodingOptions, TranscribeOptions
from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.result import TranscriptionResult
from cesar_common.transcription.whisper import DecodeOptions, transcribe

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
SPEECH = AUDIO / "speech_en.wav"  # "The quick brown fox jumps over the lazy dog. Transcription services ..."
STORY = AUDIO / "speech_en_long.flac"
CALL = AUDIO / "two_speakers.wav"
MEETING = AUDIO / "three_voices.wav"
#: the token tiny.en writes for "." (Whisper's English tokenizer)
FULL_STOP = 13
#: what the CLI gives the engine beside a job's options
ENGINE = ("start_time", "end_time", "batch_size", "beam_size")
#: the first sentence of speech_en.wav, alone: a fallback decodes it at every temperature
FIRST = {"end_time": 3.2}


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


def run(model: LoadedModel, audio: Path, *, vad: bool = True, **decoding: Any) -> TranscriptionResult:
    """``audio`` transcribed as a job with these decoding options asks (``start_time``, ``end_time``,
    ``batch_size`` and ``beam_size`` among them go to the engine as the CLI gives them)."""
    engine = {name: decoding.pop(name) for name in ENGINE if name in decoding}
    job = TranscribeOptions(model="tiny.en", vad=vad, decoding_options=DecodingOptions(**decoding))
    return transcribe(model, audio, DecodeOptions.for_job(job, **engine))


def lower_the(result: TranscriptionResult) -> int:
    """How often "the" (the token without a capital) was written."""
    return len(re.findall(r"\bthe\b", result.text))


@pytest.fixture(scope="module")
def speech(model: LoadedModel) -> TranscriptionResult:
    return run(model, SPEECH)


@pytest.fixture(scope="module")
def story_start(model: LoadedModel) -> TranscriptionResult:
    """The story's first 12 s: "Chapter one. The river ran quietly past the old mill, where the miller..."."""
    return run(model, STORY, end_time=12)


@pytest.fixture(scope="module")
def call_start(model: LoadedModel) -> TranscriptionResult:
    """The telephone call's first 15 s: "Hello? Hello? Oh, hello. I didn't know you were there. ..."."""
    return run(model, CALL, end_time=15)


def test_the_defaults_are_todays_decoding(speech: TranscriptionResult) -> None:
    assert speech.mode == "batched"
    assert [segment.decoded.temperature for segment in speech.segments if segment.decoded] == [0.0, 0.0]
    assert "lazy" in speech.text and "reliable" in speech.text


def test_hotwords_make_a_misheard_word_come_out_right(
    model: LoadedModel, speech: TranscriptionResult
) -> None:
    # tiny.en hears "the quick round fox" (BENCHMARKS.md: the hotwords case)
    assert "round fox" in speech.text and "brown" not in speech.text
    hinted = run(model, SPEECH, hotwords="brown")
    assert "brown fox" in hinted.text, hinted.text
    assert hinted.mode == "batched"  # both modes take them
    sequential = run(model, SPEECH, hotwords="brown", batch_size=1)
    assert sequential.mode == "sequential" and "brown fox" in sequential.text, sequential.text


def test_suppress_tokens_keeps_a_token_out(model: LoadedModel, speech: TranscriptionResult) -> None:
    assert "." in speech.text
    suppressed = run(model, SPEECH, suppress_tokens=(-1, FULL_STOP))
    assert "." not in suppressed.text and "reliable" in suppressed.text, suppressed.text


def test_a_temperature_list_falls_back_where_a_window_fails(model: LoadedModel) -> None:
    # log_prob_threshold 0: every window is "unsure", so each is decoded again at every temperature of the
    # list (sampled), and says so; a single temperature 0 never falls back
    fallback = run(model, SPEECH, temperature=(0.0, 0.5, 1.0), log_prob_threshold=0.0, **FIRST)
    assert fallback.mode == "sequential"  # the batched pipeline never falls back
    assert {segment.decoded.temperature for segment in fallback.segments if segment.decoded} == {1.0}
    alone = run(model, SPEECH, log_prob_threshold=0.0, batch_size=1, **FIRST)
    assert {segment.decoded.temperature for segment in alone.segments if segment.decoded} == {0.0}


def test_compression_ratio_threshold_decides_a_fallback(model: LoadedModel) -> None:
    # both sentences' text compresses (gzip) to less than itself: repetitive to a threshold of 1, so each
    # window falls back (a sentence alone is too short for gzip to shrink it)
    strict = run(model, SPEECH, temperature=(0.0, 1.0), compression_ratio_threshold=1.0)
    assert {segment.decoded.temperature for segment in strict.segments if segment.decoded} == {1.0}
    usual = run(model, SPEECH, temperature=(0.0, 1.0))
    assert {segment.decoded.temperature for segment in usual.segments if segment.decoded} == {0.0}


def test_no_speech_threshold_decides_what_is_silence(model: LoadedModel) -> None:
    # 0.6 s around "fast" without VAD: no-speech probability 0.77 and an unsure text, so Whisper drops it
    # as silence; a higher threshold keeps the (hallucinated) text
    clip = {"start_time": 5.4, "end_time": 6.0, "vad": False}
    assert run(model, SPEECH, **clip).segments == ()
    kept = run(model, SPEECH, no_speech_threshold=0.9, **clip)
    assert kept.text and kept.mode == "sequential"


def test_log_prob_threshold_decides_what_is_silence_in_either_mode(model: LoadedModel) -> None:
    # silence without VAD: Whisper makes "You" of it, sure enough of it (average log probability -0.94)
    # to keep it; a window is unsure of everything under 0, and then silence
    assert run(model, AUDIO / "silence.wav", vad=False).text.strip(" .!").lower() == "you"
    assert run(model, AUDIO / "silence.wav", vad=False, log_prob_threshold=0.0).segments == ()
    # batched (the adapter's rule, and the short-audio rule): the window around "fast" is dropped unless
    # the threshold is lower than its -1.1
    clip = {"start_time": 5.4, "end_time": 6.0}
    assert run(model, SPEECH, **clip).segments == ()
    kept = run(model, SPEECH, log_prob_threshold=-2.0, **clip)
    assert kept.mode == "batched" and kept.text, kept


def test_no_repeat_ngram_size_never_repeats_a_token(
    model: LoadedModel, story_start: TranscriptionResult
) -> None:
    assert lower_the(story_start) >= 3, story_start.text
    once = run(model, STORY, end_time=12, no_repeat_ngram_size=1)
    assert lower_the(once) == 1, once.text


def test_repetition_penalty_repeats_less(model: LoadedModel, story_start: TranscriptionResult) -> None:
    penalised = run(model, STORY, end_time=12, repetition_penalty=2.0)
    assert lower_the(penalised) < lower_the(story_start), penalised.text


def test_clip_timestamps_transcribe_only_their_spans(model: LoadedModel) -> None:
    first = run(model, SPEECH, clip_timestamps=(0.0, 3.0))
    assert "lazy" in first.text and "reliable" not in first.text, first.text
    assert first.mode == "sequential" and all(segment.end <= 3.0 for segment in first.segments)
    rest = run(model, SPEECH, clip_timestamps=(3.2,))  # an odd count: to the end
    assert "reliable" in rest.text and "lazy" not in rest.text, rest.text
    assert rest.segments[0].start >= 3.2


def test_condition_on_previous_text_prompts_the_windows_after_the_first(model: LoadedModel) -> None:
    # the story's first 33 s: two windows. The first decodes alike; the second, prompted with the first's
    # text ("... Chapter three,"), goes on from it
    alone = run(model, STORY, end_time=33, batch_size=1, beam_size=1)
    prompted = run(model, STORY, end_time=33, condition_on_previous_text=True, beam_size=1)
    assert prompted.mode == "sequential"

    def windows(result: TranscriptionResult) -> dict[int, str]:
        texts: dict[int, str] = {}
        for segment in result.segments:
            assert segment.decoded is not None
            texts[segment.decoded.seek] = f"{texts.get(segment.decoded.seek, '')} {segment.text}".strip()
        return texts

    first, *later = sorted(windows(alone))
    assert later, "the story's first 33 s should take two windows"
    assert windows(prompted)[first] == windows(alone)[first]
    assert [windows(prompted).get(seek) for seek in later] != [windows(alone)[seek] for seek in later]


def test_vad_threshold_decides_what_is_speech(model: LoadedModel, call_start: TranscriptionResult) -> None:
    # the call opens with two quiet "Hello?"s at 6.4 s: not speech to a VAD that must be 90 % sure
    assert call_start.segments[0].start < 7.0 and "hello" in call_start.segments[0].text.lower()
    sure = run(model, CALL, end_time=15, vad_threshold=0.9)
    assert sure.segments[0].start > 8.0, sure.segments[0]


def test_vad_speech_pad_ms_decides_how_much_audio_around_speech_is_kept(
    model: LoadedModel, call_start: TranscriptionResult
) -> None:
    # unpadded, the first quiet "Hello?" is too short to be heard
    bare = run(model, CALL, end_time=15, vad_speech_pad_ms=0)
    assert bare.segments[0].start > call_start.segments[0].start + 0.5, bare.segments[0]


def test_vad_min_silence_ms_moves_where_the_audio_is_cut_into_windows(model: LoadedModel) -> None:
    # the meeting's first 36 s hold more than a window of speech: batched decoding cuts it at a pause.
    # Pauses must last 2 s rather than 160 ms to end speech: the cut moves
    def cuts(result: TranscriptionResult) -> list[int]:
        return sorted({segment.decoded.seek for segment in result.segments if segment.decoded} - {0})

    usual = run(model, MEETING, end_time=36, beam_size=1)
    longer = run(model, MEETING, end_time=36, vad_min_silence_ms=2000, beam_size=1)
    assert usual.mode == longer.mode == "batched"
    assert cuts(usual) and cuts(longer) and cuts(usual) != cuts(longer), (cuts(usual), cuts(longer))

"""The live decoding policy (LocalAgreement-2) with fake decoders: what is confirmed, when, and exactly once.

The fake audio carries its own clock: each sample's value is its index in the session (exact in float32 up
to 2**24 samples, 17 minutes), so a fake decoder knows which span of the session it was given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from cesar_common.transcription import streaming
from cesar_common.transcription.result import Word
from cesar_common.transcription.streaming import (
    LocalAgreement,
    StreamingOptions,
    StreamUpdate,
    sentence_segments,
    whisper_decoder,
)

SR = 16000


def audio(start: float, end: float) -> np.ndarray:
    """The session's samples from ``start`` to ``end`` seconds (each sample's value: its index)."""
    return np.arange(round(start * SR), round(end * SR), dtype=np.float32)


def span(samples: np.ndarray) -> tuple[float, float]:
    return float(samples[0]) / SR, (float(samples[-1]) + 1) / SR


def w(start: float, end: float, text: str) -> Word:
    return Word(start, end, text, 0.9)


@dataclass
class ScriptDecoder:
    """Hears the scripted words (session time) that lie in the audio it is given: each whole word as
    spelled; a word the audio's end cuts as a wrong guess ending there (Whisper's unstable tail)."""

    words: Sequence[Word]
    calls: list[tuple[float, float, str | None]] = field(default_factory=list)

    def __call__(self, samples: np.ndarray, prompt: str | None) -> list[Word]:
        start, end = span(samples)
        self.calls.append((start, end, prompt))
        heard = []
        for word in self.words:
            if word.start >= start and word.end <= end:
                heard.append(w(word.start - start, word.end - start, word.word))
            elif start <= word.start < end:
                heard.append(w(word.start - start, end - start, word.word + "ish"))
        return heard


@dataclass
class PassDecoder:
    """Returns the next of a list of passes (times relative to the audio given), whatever the audio."""

    passes: list[list[Word]]
    calls: list[tuple[float, float, str | None]] = field(default_factory=list)

    def __call__(self, samples: np.ndarray, prompt: str | None) -> list[Word]:
        self.calls.append((*span(samples), prompt))
        return self.passes[len(self.calls) - 1] if len(self.calls) <= len(self.passes) else []


def confirmed_words(updates: Sequence[StreamUpdate]) -> list[dict[str, Any]]:
    return [word for update in updates for segment in update.segments for word in segment["words"]]


def feed(stream: LocalAgreement, start: float, end: float, *, chunk: float = 0.5) -> list[StreamUpdate]:
    """Add the session's audio from ``start`` to ``end`` in chunks, stepping whenever ready."""
    updates = []
    at = start
    while at < end - 1e-9:
        stream.add_audio(audio(at, min(at + chunk, end)))
        at = min(at + chunk, end)
        if stream.ready():
            updates.append(stream.step())
    return updates


# -- agreement ---------------------------------------------------------------------------------------


def test_a_word_is_confirmed_only_once_two_passes_agree() -> None:
    decoder = PassDecoder(
        [
            [w(0.1, 0.5, " Hello"), w(0.6, 1.0, " word")],
            [w(0.1, 0.5, " hello,"), w(0.6, 1.1, " world"), w(1.2, 1.9, " again")],
            [w(0.1, 0.5, " Hello"), w(0.62, 1.12, " world"), w(1.2, 1.8, " again."), w(2.0, 2.9, " Bye")],
        ]
    )
    stream = LocalAgreement(decoder)
    stream.add_audio(audio(0, 1))
    first = stream.step()
    assert first.decoded and first.segments == []
    assert (first.tentative, first.tentative_start) == ("Hello word", 0.1)

    stream.add_audio(audio(1, 2))
    second = stream.step()
    # "hello," and " Hello" agree (case and punctuation aside), "world" and "word" do not
    assert [s["text"] for s in second.segments] == ["hello,"]  # the newer pass's spelling and times
    assert second.segments[0]["words"] == [{"start": 0.1, "end": 0.5, "word": "hello,", "probability": 0.9}]
    assert (second.tentative, second.tentative_start) == ("world again", 0.6)
    assert stream.confirmed_end == 0.5

    stream.add_audio(audio(2, 3))
    third = stream.step()
    # "Hello" heard again (before the confirmed end) is dropped; "world again" agrees, in the newer times
    assert [s["text"] for s in third.segments] == ["world again."]
    assert [(x["start"], x["end"]) for x in third.segments[0]["words"]] == [(0.62, 1.12), (1.2, 1.8)]
    assert third.tentative == "Bye"


def test_step_without_enough_new_audio_does_not_decode() -> None:
    decoder = ScriptDecoder([w(0.1, 0.4, " Hi")])
    stream = LocalAgreement(decoder, StreamingOptions(step_seconds=1.0))
    assert not stream.ready()
    assert stream.step() == StreamUpdate([], "", None, decoded=False)
    stream.add_audio(audio(0, 0.6))
    assert not stream.ready()
    assert not stream.step().decoded and decoder.calls == []
    stream.add_audio(audio(0.6, 1.0))
    assert stream.ready() and stream.step().decoded
    assert not stream.ready()  # the step used up the new audio
    stream.add_audio(audio(1.0, 1.5))
    update = stream.step()
    assert not update.decoded and update.tentative == "Hi" and len(decoder.calls) == 1
    assert stream.audio_end == 1.5


def test_confirmed_times_never_pass_the_audio_nor_go_backwards() -> None:
    decoder = PassDecoder(
        [
            [w(0.0, 0.5, " one"), w(0.5, 1.4, " two")],  # "two" past the 1 s of audio given
            [w(0.0, 0.5, " one"), w(0.3, 1.6, " two"), w(1.6, 2.6, " three")],
        ]
    )
    stream = LocalAgreement(decoder)
    stream.add_audio(audio(0, 1))
    assert stream.step().tentative_start == 0.0
    stream.add_audio(audio(1, 1.5))
    stream.add_audio(audio(1.5, 2))
    update = stream.step()
    words = update.segments[0]["words"]
    assert [x["word"] for x in words] == ["one", "two"]
    # "two" starts where "one" ended, not before; "three" ends with the audio
    assert words[1]["start"] == 0.5 and words[1]["end"] == 1.6
    assert update.tentative == "three"
    final = stream.finish()
    assert final.segments[0]["words"][0]["end"] == 2.0 == stream.audio_end


def test_a_repeat_of_the_last_confirmed_words_is_dropped() -> None:
    """After a cut at a word's end the next pass may hear that word's tail again, at the buffer's start
    (whisper_streaming's n-gram check)."""
    decoder = PassDecoder(
        [
            [w(0.2, 0.6, " the"), w(0.6, 1.0, " old")],
            [w(0.2, 0.6, " the"), w(0.6, 1.0, " old"), w(1.0, 1.5, " mill")],
            # the tail of "old" heard again, after the confirmed end
            [w(1.02, 1.1, " old,"), w(1.1, 1.5, " mill"), w(1.6, 2.5, " where")],
        ]
    )
    stream = LocalAgreement(decoder)
    updates = feed(stream, 0, 3, chunk=1.0)
    assert [x["word"] for x in confirmed_words(updates)] == ["the", "old", "mill"]


# -- finishing -------------------------------------------------------------------------------------------


def test_finish_decodes_the_rest_once_and_confirms_all_of_it() -> None:
    script = [w(0.2, 0.6, " The"), w(0.7, 1.3, " quick"), w(1.4, 1.9, " brown"), w(2.0, 2.45, " fox.")]
    decoder = ScriptDecoder(script)
    stream = LocalAgreement(decoder)
    updates = feed(stream, 0, 2.5)
    assert len(decoder.calls) == 2
    # "quick" was cut by the first pass's audio, so only the second heard it whole
    assert [x["word"] for x in confirmed_words(updates)] == ["The"]
    final = stream.finish()
    assert final.decoded and len(decoder.calls) == 3 and decoder.calls[-1][1] == 2.5
    assert [x["word"] for x in confirmed_words([final])] == ["quick", "brown", "fox."]
    assert (final.tentative, final.tentative_start) == ("", None)
    assert stream.finish() == StreamUpdate([], "", None, decoded=False)
    with pytest.raises(RuntimeError):
        stream.add_audio(audio(2.5, 3))


def test_finish_without_new_audio_confirms_the_last_pass_without_decoding() -> None:
    decoder = ScriptDecoder([w(0.2, 0.6, " Hello"), w(1.2, 1.9, " there.")])
    stream = LocalAgreement(decoder)
    feed(stream, 0, 2)
    calls = len(decoder.calls)
    final = stream.finish()
    assert not final.decoded and len(decoder.calls) == calls
    assert [s["text"] for s in final.segments] == ["there."]


def test_finish_of_an_empty_stream() -> None:
    decoder = ScriptDecoder([])
    assert LocalAgreement(decoder).finish() == StreamUpdate([], "", None, decoded=False)
    assert decoder.calls == []


# -- segments --------------------------------------------------------------------------------------------


def test_confirmed_words_split_into_segments_at_sentence_ends_and_pauses() -> None:
    words = [
        w(0.0, 0.3, " Yes."),
        w(0.4, 0.7, " I"),
        w(0.8, 1.1, " see"),
        w(2.1, 2.4, " but"),  # after a pause of 1.0 s
        w(2.5, 2.8, " why?"),
        w(2.9, 3.2, " Because"),
    ]
    decoder = PassDecoder([words, [*words, w(3.3, 3.9, " it")]])
    stream = LocalAgreement(decoder, StreamingOptions(step_seconds=2.0))
    updates = feed(stream, 0, 4, chunk=2.0)
    segments = updates[-1].segments
    assert [s["text"] for s in segments] == ["Yes.", "I see", "but why?", "Because"]
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 0.3), (0.4, 1.1), (2.1, 2.8), (2.9, 3.2)]
    assert all("id" not in s for s in segments)
    assert [x["word"] for x in segments[1]["words"]] == ["I", "see"]  # stored as the engine stores words
    assert updates[-1].tentative == "it"


def test_times_are_session_times_rounded_plain_floats() -> None:
    odd = [w(np.float32(0.1234567), np.float32(0.87654), " odd")]  # type: ignore[arg-type]
    stream = LocalAgreement(PassDecoder([odd, odd]), offset=1 / 3)
    updates = feed(stream, 1 / 3, 1 / 3 + 2, chunk=1.0)
    assert type(updates[0].tentative_start) is float and updates[0].tentative_start == 0.457
    segment = updates[-1].segments[0]
    word = segment["words"][0]
    values = [segment["start"], segment["end"], word["start"], word["end"], word["probability"]]
    assert all(type(value) is float for value in values)
    assert (segment["start"], segment["end"]) == (0.457, 1.21) == (word["start"], word["end"])
    assert stream.audio_end == 2.333 and stream.confirmed_end == 1.21


# -- trims and long streams --------------------------------------------------------------------------


def story(seconds: float, *, seed: int, unpunctuated: tuple[float, float] = (0.0, 0.0)) -> list[Word]:
    """Scripted speech: unique words of 0.2-0.6 s, sentences of 3-12 words, now and then a pause; no
    sentence ends in the ``unpunctuated`` span."""
    rng = random.Random(seed)
    words: list[Word] = []
    at, left = 0.3, rng.randint(3, 12)
    while True:
        length = rng.uniform(0.2, 0.6)
        if at + length > seconds:
            return words
        left -= 1
        ends = left <= 0 and not unpunctuated[0] <= at < unpunctuated[1]
        words.append(w(round(at, 3), round(at + length, 3), f" w{len(words)}" + ("." if ends else "")))
        if ends:
            left = rng.randint(3, 12)
        at += length + (rng.uniform(1.0, 3.0) if rng.random() < 0.08 else rng.uniform(0.05, 0.25))


@pytest.mark.parametrize(("seed", "unpunctuated"), [(1, (0.0, 0.0)), (2, (20.0, 75.0)), (3, (0.0, 90.0))])
def test_a_long_stream_confirms_every_word_exactly_once(seed: int, unpunctuated: tuple[float, float]) -> None:
    script = story(90.0, seed=seed, unpunctuated=unpunctuated)
    decoder = ScriptDecoder(script)
    options = StreamingOptions()
    stream = LocalAgreement(decoder, options)
    updates = []
    at = 0.0
    while at < 90.0:
        stream.add_audio(audio(at, at + 0.5))
        at += 0.5
        if stream.ready():
            update = stream.step()
            for word in confirmed_words([update]):
                assert word["end"] <= stream.audio_end
            updates.append(update)
    updates.append(stream.finish())
    confirmed = confirmed_words(updates)
    assert [(x["start"], x["end"], x["word"]) for x in confirmed] == [
        (word.start, word.end, word.word.strip()) for word in script
    ]
    lengths = [end - start for start, end, _ in decoder.calls]
    assert max(lengths) <= options.max_buffer_seconds
    assert min(lengths[40:]) < options.trim_seconds  # trimmed, again and again
    # finish() confirms only what the last passes had not agreed on yet: the last seconds' words
    assert all(x["end"] > 90.0 - 3.0 for x in confirmed_words(updates[-1:]))


def test_a_long_stream_confirms_words_soon_after_they_are_spoken() -> None:
    script = story(60.0, seed=4)
    stream = LocalAgreement(ScriptDecoder(script))
    delays = []
    at = 0.0
    while at < 60.0:
        stream.add_audio(audio(at, at + 0.5))
        at += 0.5
        if stream.ready():
            delays += [stream.audio_end - x["end"] for x in confirmed_words([stream.step()])]
    assert float(np.median(delays)) <= 2.0 and max(delays) <= 3.0


def test_a_trim_cuts_at_the_last_confirmed_sentence_end() -> None:
    script = story(40.0, seed=5)
    decoder = ScriptDecoder(script)
    stream = LocalAgreement(decoder, StreamingOptions(trim_seconds=8.0))
    feed(stream, 0, 40)
    sentence_ends = {word.end for word in script if word.word.endswith(".")}
    starts = sorted({start for start, _, _ in decoder.calls} - {0.0})
    assert starts and all(start in sentence_ends for start in starts)


def test_audio_no_two_passes_agree_on_is_taken_from_one_pass_past_the_window() -> None:
    """A decoder that never says the same twice: nothing is confirmed by agreement, so once the buffer
    holds a whole window the last pass's words are confirmed as it heard them (none lost, none twice),
    and no pass decodes more than max_buffer_seconds."""

    def fickle(samples: np.ndarray, prompt: str | None) -> list[Word]:
        start, end = span(samples)
        return [w(0.0, end - start, f" {end}")]

    seen: list[float] = []

    def decoder(samples: np.ndarray, prompt: str | None) -> list[Word]:
        seen.append(len(samples) / SR)
        return fickle(samples, prompt)

    options = StreamingOptions(max_buffer_seconds=10.0)
    stream = LocalAgreement(decoder, options)
    updates = feed(stream, 0, 40)
    words = confirmed_words(updates)
    assert len(words) >= 3
    assert max(seen) <= 10.0
    ends = [x["end"] for x in words]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    final = stream.finish()
    assert confirmed_words([final])[-1]["end"] == 40.0


def test_agreement_goes_on_at_once_after_a_window_taken_from_one_pass() -> None:
    """A mumble at the start is heard differently by every pass, so nothing after it is confirmed either;
    once the buffer holds a whole window, the last pass's words over its oldest audio are taken as heard,
    and the words both passes heard after them are confirmed in that very pass."""
    stable = [w(1.2 + 0.5 * i, 1.6 + 0.5 * i, f" s{i}") for i in range(30)]
    calls: list[float] = []

    def decoder(samples: np.ndarray, prompt: str | None) -> list[Word]:
        start, end = span(samples)
        calls.append(start)
        mumble = [w(0.0, 0.9 - start, f" m{len(calls)}")] if start < 0.1 else []
        return mumble + [w(x.start - start, x.end - start, x.word) for x in stable if x.end <= end]

    stream = LocalAgreement(decoder, StreamingOptions(max_buffer_seconds=10.0))
    updates = feed(stream, 0, 11, chunk=1.0)
    assert calls[-1] == 1.6 and calls[-2] == 0.0
    assert confirmed_words(updates[:-1]) == []
    taken = [x["word"] for x in confirmed_words(updates[-1:])]
    assert taken[0].startswith("m") and taken[1:] == [f"s{i}" for i in range(17)]


def test_silence_does_not_grow_the_buffer() -> None:
    decoder = ScriptDecoder([w(60.5, 61.0, " Hello"), w(61.1, 61.6, " again.")])
    stream = LocalAgreement(decoder)
    updates = feed(stream, 0, 63)
    silent = [end - start for start, end, _ in decoder.calls if end <= 60.5]
    assert len(silent) == 60 and max(silent) <= 4.0  # a pass a second, none over more than 4 s of audio
    final = stream.finish()
    assert [x["word"] for x in confirmed_words([*updates, final])] == ["Hello", "again."]


# -- prompts and resuming -------------------------------------------------------------------------------


def test_the_prompt_is_the_confirmed_text_before_the_buffer() -> None:
    script = story(40.0, seed=6)
    decoder = ScriptDecoder(script)
    stream = LocalAgreement(decoder, StreamingOptions(prompt_chars=30))
    feed(stream, 0, 40)
    assert decoder.calls[0][2] is None
    prompted = [(start, prompt) for start, _, prompt in decoder.calls if start > 0]
    assert prompted
    for start, prompt in prompted:
        before = "".join(word.word for word in script if word.end <= start).strip()
        assert prompt is not None and len(prompt) <= 30
        assert before.endswith(prompt)
        assert before[-len(prompt) - 1] == " "  # from a word's start


def test_a_resumed_stream_starts_at_its_offset_with_the_text_before_as_prompt() -> None:
    earlier = "A long time ago. " * 20 + "Then it said, over"
    script = [w(100.2, 100.6, " over"), w(100.7, 101.1, " and"), w(101.2, 101.6, " out.")]
    decoder = ScriptDecoder(script)
    stream = LocalAgreement(decoder, offset=100.0, confirmed_text=earlier)
    assert stream.audio_end == stream.confirmed_end == 100.0
    updates = feed(stream, 100, 102.5)
    assert decoder.calls[0][:2] == (100.0, 101.0)
    prompt = decoder.calls[0][2]
    assert prompt is not None and len(prompt) <= 200 and earlier.endswith(prompt)
    final = stream.finish()
    words = confirmed_words([*updates, final])
    # " over" is the last word confirmed before: heard again at the start, it is not confirmed twice
    assert [(x["start"], x["word"]) for x in words] == [(100.7, "and"), (101.2, "out.")]
    assert stream.audio_end == 102.5


def test_no_prompt_when_prompt_chars_is_zero() -> None:
    decoder = ScriptDecoder(story(30.0, seed=7))
    feed(LocalAgreement(decoder, StreamingOptions(prompt_chars=0), confirmed_text="Before."), 0, 30)
    assert all(prompt is None for _, _, prompt in decoder.calls)


# -- the final transcript's segments ------------------------------------------------------------------


def seg(start: float, end: float, text: str, *, words: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {"start": start, "end": end, "text": text}
    if words:
        spoken = text.split()
        step = (end - start) / len(spoken)
        data["words"] = [
            {"start": start + i * step, "end": start + (i + 1) * step, "word": word, "probability": 0.9}
            for i, word in enumerate(spoken)
        ]
    return data


def test_sentence_segments_join_until_a_sentence_or_clause_ends() -> None:
    joined = sentence_segments(
        [
            seg(0.0, 1.0, "The river"),
            seg(1.1, 2.0, "ran quietly"),
            seg(2.1, 3.0, "past the mill,"),
            seg(3.1, 4.0, "where the miller"),
            seg(4.1, 5.0, "kept his records."),
            seg(5.1, 6.0, "The end"),
        ]
    )
    assert [(s["start"], s["end"], s["text"]) for s in joined] == [
        (0.0, 3.0, "The river ran quietly past the mill,"),
        (3.1, 5.0, "where the miller kept his records."),
        (5.1, 6.0, "The end"),
    ]
    assert [x["word"] for x in joined[1]["words"]] == ["where", "the", "miller", "kept", "his", "records."]


def test_sentence_segments_break_at_pauses_and_at_30_seconds() -> None:
    pauses = sentence_segments([seg(0.0, 1.0, "one"), seg(2.0, 3.0, "two"), seg(3.5, 4.0, "three")])
    assert [s["text"] for s in pauses] == ["one", "two three"]
    assert [s["text"] for s in sentence_segments(pauses, pause_seconds=3.0)] == ["one two three"]
    long = sentence_segments([seg(10.0 * i, 10.0 * i + 9.8, f"part{i}") for i in range(7)])
    assert [s["text"] for s in long] == ["part0 part1 part2", "part3 part4 part5", "part6"]
    assert all(s["end"] - s["start"] <= 30.0 for s in long)


def test_sentence_segments_without_words_and_with_whisper_spelling() -> None:
    plain = sentence_segments([seg(0.0, 1.0, "Hello", words=False), seg(1.2, 2.0, " there.", words=False)])
    assert plain == [{"start": 0.0, "end": 2.0, "text": "Hello there."}]
    spelled = [
        {"start": 0.0, "end": 0.5, "text": "Hi", "words": [{"start": 0.0, "end": 0.5, "word": " Hi"}]},
        {"start": 0.6, "end": 0.9, "text": "you.", "words": [{"start": 0.6, "end": 0.9, "word": " you."}]},
    ]
    assert sentence_segments(spelled)[0]["text"] == "Hi you."
    assert sentence_segments([]) == []
    original = [seg(0.0, 1.0, "a"), seg(1.1, 2.0, "b.")]
    snapshot = [dict(s) for s in original]
    sentence_segments(original)
    assert original == snapshot  # pure


# -- the Whisper decoder ---------------------------------------------------------------------------------


def test_whisper_decoder_asks_for_word_timestamps_and_returns_plain_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cesar_common.transcription import faster_whisper_adapter as adapter

    calls: list[tuple[Any, np.ndarray, adapter.Decoding]] = []
    consumed: list[int] = []

    def segments() -> Any:
        for index, words in enumerate(
            [[(0.0, 0.5, " Hi")], [(0.6, 1.0, " there."), (1.1, 1.4, " Bye")], None]
        ):
            consumed.append(index)
            yield adapter.WhisperSegment(
                start=0.0,
                end=1.0,
                text="",
                words=None
                if words is None
                else tuple(adapter.WhisperWord(s, e, t, 0.75) for s, e, t in words),
                seek=0,
                temperature=0.0,
                avg_logprob=-0.2,
                compression_ratio=1.0,
                no_speech_prob=0.0,
                tokens=(),
            )

    def transcribe(model: Any, samples: np.ndarray, decoding: adapter.Decoding, *, batch_size: int) -> Any:
        assert batch_size == 1  # one window, one encoder pass
        calls.append((model, samples, decoding))
        info = adapter.TranscriptionInfo("en", 1.0, 1.0)
        return segments(), info

    monkeypatch.setattr(adapter, "transcribe_batched", transcribe)

    class Loaded:
        whisper = object()

    decode = whisper_decoder(Loaded(), language="fr", task="translate", beam_size=2, vad=False)  # type: ignore[arg-type]
    samples = np.zeros(SR, dtype=np.float32)
    words = decode(samples, "Before.")
    assert words == [
        Word(0.0, 0.5, " Hi", 0.75),
        Word(0.6, 1.0, " there.", 0.75),
        Word(1.1, 1.4, " Bye", 0.75),
    ]
    assert consumed == [0, 1, 2]
    model, given, decoding = calls[0]
    assert model is Loaded.whisper and given is samples
    assert decoding == adapter.Decoding(
        language="fr",
        task="translate",
        beam_size=2,
        initial_prompt="Before.",
        vad=False,
        word_timestamps=True,
    )


def test_the_module_does_not_import_faster_whisper() -> None:
    import subprocess
    import sys

    code = "import sys, cesar_common.transcription.streaming; print('faster_whisper' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )
    assert streaming.__all__ == [
        "DecodeWords",
        "LocalAgreement",
        "StreamUpdate",
        "StreamingOptions",
        "sentence_segments",
        "whisper_decoder",
    ]


# -- turns ---------------------------------------------------------------------------------------------


def test_flush_confirms_the_turn_and_the_next_turn_starts_on_an_empty_buffer() -> None:
    script = [w(0.2, 0.6, " The"), w(0.7, 1.3, " quick"), w(3.2, 3.6, " Next")]
    decoder = ScriptDecoder(script)
    stream = LocalAgreement(decoder)
    feed(stream, 0, 1.5)
    flushed = stream.flush()
    assert flushed.decoded and decoder.calls[-1][:2] == (0.0, 1.5)
    assert [x["word"] for x in confirmed_words([flushed])] == ["The", "quick"]
    assert (flushed.tentative, stream.buffer_seconds) == ("", 0.0)
    assert not stream.ready(), "nothing new to decode"
    updates = feed(stream, 1.5, 4.0)
    assert decoder.calls[-1][0] == 1.5, "the next pass starts where the turn ended"
    assert decoder.calls[-1][2] == "The quick", "prompted with the turn before"
    assert "Next" in [x["word"] for x in confirmed_words([*updates, stream.finish()])]


def test_clear_drops_what_is_not_confirmed() -> None:
    decoder = ScriptDecoder([w(0.2, 0.6, " Dropped"), w(2.2, 2.6, " Kept.")])
    stream = LocalAgreement(decoder)
    feed(stream, 0, 1.0)
    cleared = stream.clear()
    assert (cleared.segments, cleared.tentative, stream.buffer_seconds) == ([], "", 0.0)
    updates = feed(stream, 1.0, 3.0)
    words = [x["word"] for x in confirmed_words([*updates, stream.finish()])]
    assert words == ["Kept."]

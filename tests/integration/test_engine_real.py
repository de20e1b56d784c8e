"""The engine for real: the bundled tiny.en model on the audio fixtures (one model load for the session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cesar_common.errors import AudioDecodeError, InvalidInputError, LanguageError, UnsupportedMediaError
from cesar_common.transcription.audio import probe_audio
from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.result import Segment, TranscriptionResult
from cesar_common.transcription.whisper import DecodeOptions, TranscriptionCancelled, transcribe

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
SHORT_WORDS = ("lazy", "transcription", "fast", "reliable")
LONG_WORDS = ("chapter", "mill", "museum", "spring")
SHORT_SECONDS = 7.15


@pytest.fixture(scope="session")
def engine_model() -> LoadedModel:
    return load_model("tiny.en", device="cpu", compute_type="int8")


def _words(result: TranscriptionResult) -> str:
    return result.text.lower()


def _assert_plain_floats(result: TranscriptionResult) -> None:
    assert type(result.duration) is float and type(result.language_probability) is float
    for segment in result.segments:
        assert type(segment.start) is float and type(segment.end) is float
        for word in segment.words or ():
            assert type(word.start) is float and type(word.probability) is float


def test_loaded_model_describes_itself(engine_model: LoadedModel) -> None:
    assert (engine_model.name, engine_model.device, engine_model.compute_type) == ("tiny.en", "cpu", "int8")
    assert Path(engine_model.path, "model.bin").is_file()


@pytest.mark.parametrize(
    "name",
    [
        "speech_en.wav",
        "speech_en.flac",
        "speech_en.mp3",
        "speech_en.m4a",
        "speech_en.ogg",
        "speech_en.webm",
        "speech_en_stereo44k.wav",
    ],
)
def test_every_container_transcribes(engine_model: LoadedModel, name: str) -> None:
    result = transcribe(engine_model, AUDIO / name, DecodeOptions())
    text = _words(result)
    assert "lazy" in text
    assert sum(word in text for word in SHORT_WORDS) >= 3, text
    assert result.duration == pytest.approx(SHORT_SECONDS, abs=0.1)
    assert (result.language, result.language_probability) == ("en", 1.0)
    assert (result.model, result.device, result.compute_type, result.mode) == (
        "tiny.en",
        "cpu",
        "int8",
        "batched",
    )
    assert result.segments and all(s.words is None for s in result.segments)
    _assert_plain_floats(result)


def test_long_story_with_word_timestamps(engine_model: LoadedModel) -> None:
    progress: list[tuple[float, float]] = []
    result = transcribe(
        engine_model,
        AUDIO / "speech_en_long.flac",
        DecodeOptions(word_timestamps=True, beam_size=1),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    text = _words(result)
    # tiny.en sometimes drops a sentence of the story; three of the four marker words is plenty
    assert sum(word in text for word in LONG_WORDS) >= 3, text
    assert text.count("chapter") >= 4  # the story is told twice
    assert result.duration == pytest.approx(69.7, abs=0.1)
    _assert_plain_floats(result)

    starts = [word.start for segment in result.segments for word in segment.words or ()]
    assert len(starts) > 150 and starts == sorted(starts)
    for segment in result.segments:
        assert segment.words, segment
        assert segment.start <= segment.end <= result.duration
        for word in segment.words:
            assert segment.start - 0.05 <= word.start <= word.end <= segment.end + 0.05
            assert 0.0 <= word.probability <= 1.0 and word.word.strip()

    assert progress[0] == (0.0, result.duration) and progress[-1] == (result.duration, result.duration)
    done = [d for d, _ in progress]
    assert done == sorted(done) and len(progress) >= len(result.segments)


def test_silence_with_vad_is_empty(engine_model: LoadedModel) -> None:
    result = transcribe(engine_model, AUDIO / "silence.wav", DecodeOptions())
    assert result.text == "" and result.segments == ()
    assert result.duration == pytest.approx(5.0)


@pytest.mark.parametrize("batch_size", [0, 1], ids=["batched", "sequential"])
def test_a_clip_cut_short_is_empty_as_silence_is(engine_model: LoadedModel, batch_size: int) -> None:
    """truncated.mp3 is the first 0.4 s of speech_en ("The qu-"), of which tiny.en made "That's it." (an
    average log probability under -1: unsure)."""
    result = transcribe(engine_model, AUDIO / "truncated.mp3", DecodeOptions(batch_size=batch_size))
    assert result.mode == ("batched" if batch_size == 0 else "sequential")
    assert result.text == "" and result.segments == ()
    assert result.duration == pytest.approx(0.4, abs=0.01)


def test_without_vad_a_clip_cut_short_is_decoded_all_the_same(engine_model: LoadedModel) -> None:
    # documented: without VAD, Whisper transcribes whatever it is given
    result = transcribe(engine_model, AUDIO / "truncated.mp3", DecodeOptions(vad=False))
    assert result.mode == "sequential" and result.text.strip()


@pytest.mark.parametrize("batch_size", [0, 1], ids=["batched", "sequential"])
def test_a_clear_word_in_under_a_second_is_kept(engine_model: LoadedModel, batch_size: int) -> None:
    # the call's first "Hello?", alone in 0.8 s of audio: less than SHORT_AUDIO_SECONDS, and Whisper is sure
    options = DecodeOptions(start_time=6.5, end_time=7.3, batch_size=batch_size)
    result = transcribe(engine_model, AUDIO / "two_speakers.wav", options)
    assert "hello" in _words(result)


def test_start_time_clips_and_keeps_file_times(engine_model: LoadedModel) -> None:
    result = transcribe(engine_model, AUDIO / "speech_en.wav", DecodeOptions(start_time=3.4))
    text = _words(result)
    assert "reliable" in text and "lazy" not in text
    assert result.duration == pytest.approx(SHORT_SECONDS - 3.4, abs=0.05)
    assert all(3.4 <= s.start <= s.end <= SHORT_SECONDS for s in result.segments)


def test_end_time_clips(engine_model: LoadedModel) -> None:
    result = transcribe(engine_model, AUDIO / "speech_en.wav", DecodeOptions(end_time=3.3, beam_size=1))
    text = _words(result)
    assert "lazy" in text and "reliable" not in text
    assert result.duration == pytest.approx(3.3, abs=0.01)
    assert all(s.end <= 3.3 for s in result.segments)


def test_batched_mode_and_decoding_options(engine_model: LoadedModel) -> None:
    options = DecodeOptions(batch_size=2, word_timestamps=True, initial_prompt="Transcription, reliable.")
    result = transcribe(engine_model, AUDIO / "speech_en.flac", options)
    assert result.mode == "batched"
    assert "lazy" in _words(result)
    assert all(segment.words for segment in result.segments)


def test_should_stop_cancels_between_segments(engine_model: LoadedModel) -> None:
    seen: list[float] = []
    segments: list[Segment] = []
    with pytest.raises(TranscriptionCancelled) as caught:
        transcribe(
            engine_model,
            AUDIO / "speech_en_long.flac",
            DecodeOptions(beam_size=1),
            on_progress=lambda done, _total: seen.append(done),
            on_segment=segments.append,
            should_stop=lambda: len(segments) > 0,
        )
    assert caught.value.code == "cancelled"
    assert len(segments) == 1 and seen[-1] < 60


@pytest.mark.parametrize("name", ["empty.wav", "junk.mp3", "not_audio.mp3"])
def test_undecodable_files_are_decode_errors(engine_model: LoadedModel, name: str) -> None:
    with pytest.raises(AudioDecodeError, match=name) as caught:
        transcribe(engine_model, AUDIO / name, DecodeOptions())
    assert caught.value.__cause__ is not None or name == "empty.wav"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (DecodeOptions(start_time=5, end_time=2), InvalidInputError, "must be before end time"),
        (DecodeOptions(start_time=3, end_time=3), InvalidInputError, "must be before end time"),
        (DecodeOptions(start_time=30), InvalidInputError, "past the end of the audio"),
        (DecodeOptions(task="summarise"), InvalidInputError, "unknown task"),
        (DecodeOptions(beam_size=0), InvalidInputError, "beam size"),
        (DecodeOptions(language="klingon"), LanguageError, "unknown language code"),
        (DecodeOptions(language="fr"), LanguageError, "only transcribes English"),
    ],
)
def test_bad_options_are_refused(
    engine_model: LoadedModel, options: DecodeOptions, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        transcribe(engine_model, AUDIO / "speech_en.wav", options)


def test_language_can_be_given(engine_model: LoadedModel) -> None:
    result = transcribe(engine_model, AUDIO / "speech_en.ogg", DecodeOptions(language="EN", beam_size=1))
    assert result.language == "en" and "lazy" in _words(result)


@pytest.mark.parametrize(
    ("name", "codec", "rate", "channels"),
    [
        ("speech_en.wav", "pcm_s16le", 16000, 1),
        ("speech_en.m4a", "aac", 16000, 1),
        ("speech_en.webm", "opus", 48000, 1),
        ("speech_en_stereo44k.wav", "pcm_s16le", 44100, 2),
        ("speech_en_long.flac", "flac", 16000, 1),
        ("truncated.mp3", "mp3float", 16000, 1),
    ],
)
def test_probe_audio_reads_real_files(name: str, codec: str, rate: int, channels: int) -> None:
    info = probe_audio(AUDIO / name)
    assert (info.codec, info.sample_rate, info.channels) == (codec, rate, channels)
    assert info.duration is not None and info.duration > 0


def test_probe_audio_accepts_file_objects() -> None:
    with open(AUDIO / "speech_en.mp3", "rb") as handle:
        handle.seek(0)
        info = probe_audio(handle)
        assert handle.tell() == 0
    assert info.duration == pytest.approx(SHORT_SECONDS, abs=0.1)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.wav", "empty"),
        ("junk.mp3", "not an audio or video file"),
        ("not_audio.mp3", "not an audio or video file"),
        ("README.md", "not an audio or video file"),
    ],
)
def test_probe_audio_refuses_non_audio(name: str, message: str) -> None:
    with pytest.raises(UnsupportedMediaError, match=message):
        probe_audio(AUDIO / name)


def test_probe_audio_refuses_video_without_sound(tmp_path: Path) -> None:
    import av
    import numpy as np

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(UnsupportedMediaError, match="no audio stream"):
        probe_audio(path)

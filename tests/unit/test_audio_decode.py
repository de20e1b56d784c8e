"""Decoding a file to Whisper's samples: the same samples faster-whisper's decoder gives, a cap on the
length that a hostile header cannot get round, and a stop request honoured while a long file decodes."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.audio import decode_audio

from cesar_common.errors import AudioTooLongError, UnsupportedMediaError
from cesar_common.transcription.audio import DecodeStopped, decode_samples, probe_audio

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


@pytest.mark.parametrize(
    "name", ["speech_en.wav", "speech_en_stereo44k.wav", "speech_en.mp3", "truncated.mp3"]
)
def test_the_samples_are_faster_whispers(name: str) -> None:
    assert np.array_equal(decode_samples(AUDIO / name), decode_audio(str(AUDIO / name)))


def one_hertz_wav(path: Path) -> Path:
    """32 KB of data in a WAV that says it holds one sample a second: 16,000 s "long"."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(1)
        out.writeframes(b"\x01\x02" * 16000)
    return path


def test_a_one_hertz_wav_is_refused_before_decoding(tmp_path: Path) -> None:
    path = one_hertz_wav(tmp_path / "tiny-rate.wav")
    with pytest.raises(UnsupportedMediaError, match="1 samples a second"):
        probe_audio(path)
    with pytest.raises(UnsupportedMediaError, match="1 samples a second"):
        decode_samples(path)


def test_a_file_longer_than_the_cap_is_refused_by_its_header(tmp_path: Path) -> None:
    with pytest.raises(AudioTooLongError, match="CESAR_MAX_AUDIO_SECONDS") as raised:
        decode_samples(AUDIO / "speech_en_long.flac", max_seconds=30)
    assert raised.value.extra["duration"] == pytest.approx(69.7, abs=0.1)


def test_the_cap_holds_while_decoding_when_the_header_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream whose header tells no duration: decoding stops once past the cap, not at the file's end."""
    from cesar_common.transcription import audio

    monkeypatch.setattr(audio, "_duration", lambda container, stream: None)
    groups: list[object] = []
    real = audio._groups
    monkeypatch.setattr(audio, "_groups", lambda *args: (groups.append(g) or g for g in real(*args)))
    with pytest.raises(AudioTooLongError):
        decode_samples(AUDIO / "speech_en_long.flac", max_seconds=40)
    assert len(groups) == 2  # 30 s, then 30 s more (past 40): the last 10 s were never decoded


def test_a_stop_request_interrupts_decoding() -> None:
    with pytest.raises(DecodeStopped):
        decode_samples(AUDIO / "speech_en_long.flac", should_stop=lambda: True)


def test_repeated_decodes_hold_no_memory() -> None:
    """No full garbage collection after each decode (it cost a worker 40-50 ms a job), and none needed: the
    resampler's buffers go with the automatic collector. A leak of one decode's buffers (the 70 s story is
    4.5 MB of samples) would show after forty."""
    import psutil

    process = psutil.Process()
    story = AUDIO / "speech_en_long.flac"
    decode_samples(story)
    before = process.memory_info().rss
    for _ in range(40):
        decode_samples(story)
    assert process.memory_info().rss - before < 32 * 1024 * 1024

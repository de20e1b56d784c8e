"""Decoding a file to Whisper's samples: the same samples faster-whisper's decoder gives, a cap on the
length that a hostile header cannot get round (nor a missing one make costly), and a stop request honoured
while a long file decodes."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.audio import decode_audio

from cesar_common.errors import AudioTooLongError, UnsupportedMediaError
from cesar_common.transcription.audio import DecodeStopped, decode_samples, probe_audio, too_long

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
    assert str(raised.value).startswith("the audio is 69.7 seconds long, more than this server accepts (30 s")


@pytest.mark.parametrize(
    ("duration", "cap", "said"),
    [
        (5 * 3600.0, 4 * 3600.0, "the audio is 300 minutes long, more than this server accepts (240 minutes"),
        (14_410.0, 14_400.0, "the audio is 240.2 minutes long, more than this server accepts (240 minutes"),
        (14_401.0, 14_400.0, "the audio is 14,401.0 seconds long, more than this server accepts (14,400.0"),
    ],
)
def test_the_refusal_says_the_real_length(duration: float, cap: float, said: str) -> None:
    assert str(too_long(duration, cap)).startswith(said)


# --- FLAC that declares no length (or a false one) -------------------------------------------------------
def _crc(data: bytes, width: int, poly: int) -> int:
    crc, top, mask = 0, 1 << (width - 1), (1 << width) - 1
    for byte in data:
        crc ^= byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def _frame_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of a frame number (enough for the 3 bytes used here)."""
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    return bytes([0xE0 | n >> 12, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])


def silent_flac(path: Path, seconds: float, *, declared_samples: int = 0) -> Path:
    """16 kHz digital silence as FLAC, 15 bytes per 4-second frame (2 hours in 26 KB), whose header
    declares ``declared_samples`` (0: "unknown", which FFmpeg reports as no duration at all)."""
    rate, block = 16_000, 65_535
    info = struct.pack(">HH", block, block) + bytes(6)  # block sizes; frame sizes unknown
    info += (rate << 44 | 15 << 36 | declared_samples).to_bytes(8, "big") + bytes(16)  # mono, 16 bits
    out = bytearray(b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info)
    for number in range(int(seconds * rate) // block):
        # fixed blocking, size in 16 bits after the number, rate from STREAMINFO, mono, 16 bits
        header = bytes([0xFF, 0xF8, 0x70, 0x08]) + _frame_number(number) + struct.pack(">H", block - 1)
        frame = header + bytes([_crc(header, 8, 0x07)]) + bytes(3)  # a CONSTANT subframe of 0
        out += frame + struct.pack(">H", _crc(frame, 16, 0x8005))
    path.write_bytes(out)
    return path


_MEASURE = """
import json, resource, sys
from cesar_common.errors import AudioTooLongError
from cesar_common.transcription.audio import decode_samples
decode_samples(sys.argv[2])  # PyAV and its FLAC decoder, loaded before the measure starts
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_samples(sys.argv[1], max_seconds=float(sys.argv[3]))
    said = None
except AudioTooLongError as exc:
    said = str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"said": said, "grown_mb": grown / 1024}))
"""


@pytest.mark.parametrize("declared_samples", [0, 16_000], ids=["no-length", "says-one-second"])
def test_a_file_that_decodes_to_hours_is_refused_at_the_cap_holding_little(
    tmp_path: Path, declared_samples: int
) -> None:
    """A 26 KB FLAC that decodes to two hours, with a one-hour cap: refused once decoding passes an
    hour, the process's peak memory grown by tens of MB at most (holding the hour would take 115 MB)."""
    path = silent_flac(tmp_path / "hours.flac", 2 * 3600, declared_samples=declared_samples)
    assert path.stat().st_size < 30_000
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(AUDIO / "speech_en.flac"), "3600"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(measured.stdout)
    assert result["said"] == (
        "the audio is more than 60 minutes long, the most this server accepts (CESAR_MAX_AUDIO_SECONDS): "
        "decoding stopped there"
    )
    assert result["grown_mb"] < 40, result


def test_a_file_longer_than_its_header_says_but_within_the_cap_decodes_whole(tmp_path: Path) -> None:
    """Past what the header declared (plus the held margin) decoding only counts, then decodes again."""
    path = silent_flac(tmp_path / "longer.flac", 400, declared_samples=16_000)
    samples = decode_samples(path, max_seconds=3600)
    assert samples.size == (400 * 16_000 // 65_535) * 65_535
    assert not samples.any()


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

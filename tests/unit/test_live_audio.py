"""A live session's audio, bytes in and 16 kHz float32 samples out a piece at a time: raw PCM at any rate
joins exactly whatever the sizes of the pieces, a container FFmpeg reads is decoded as it arrives (the same
samples as the whole file decoded at once), and what cannot be decoded fails with a readable error."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cesar_common.errors import AudioDecodeError
from cesar_common.transcription.audio import decode_samples
from cesar_common.transcription.live_audio import AudioStream, ContainerStream, PcmStream, open_stream

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
SPEECH_SECONDS = 7.2  # speech_en.*, as the fixtures' README gives it


def wav_pcm(name: str = "speech_en.wav") -> bytes:
    with wave.open(str(AUDIO / name)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        return bytes(wav.readframes(wav.getnframes()))


def odd_pieces(data: bytes, sizes: tuple[int, ...] = (1, 3, 1001, 7, 4096, 2, 333)) -> Iterator[bytes]:
    """``data`` cut in pieces of odd sizes (a sample's two bytes often in two pieces), in turn."""
    at, n = 0, 0
    while at < len(data):
        size = sizes[n % len(sizes)]
        yield data[at : at + size]
        at, n = at + size, n + 1


def run(stream: AudioStream, pieces: Iterator[bytes]) -> np.ndarray:
    """Feed every piece, taking what is ready after each (as the worker does), then close; all taken."""
    out = []
    for piece in pieces:
        stream.feed(piece)
        out.append(stream.take())
    stream.close()
    out.append(stream.take())
    samples = np.concatenate(out)
    assert samples.dtype == np.float32
    return samples


def sine_pcm(rate: int, seconds: float, hz: float = 440.0) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * 10000).astype("<i2").tobytes()


# --- raw PCM -----------------------------------------------------------------------------------------
def test_pcm_at_16k_joins_pieces_of_odd_sizes_exactly() -> None:
    pcm = wav_pcm()
    samples = run(PcmStream(16000), odd_pieces(pcm))
    expected = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    assert np.array_equal(samples, expected)


def test_pcm_takes_nothing_until_a_whole_sample_arrived() -> None:
    stream = PcmStream(16000)
    stream.feed(b"\x00")
    assert stream.take().size == 0
    stream.feed(b"\x40")  # 0x4000 = 16384: half of full scale
    assert stream.take().tolist() == [0.5]
    assert stream.take().size == 0  # taken once


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_pcm_at_other_rates_is_resampled_to_16k(rate: int) -> None:
    seconds = 3.0
    samples = run(PcmStream(rate), odd_pieces(sine_pcm(rate, seconds)))
    assert abs(samples.size - seconds * 16000) <= 4
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16000 / samples.size == pytest.approx(440, abs=2)  # the tone, not a click


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampled_pcm_is_the_same_whatever_the_pieces(rate: int) -> None:
    pcm = (np.random.default_rng(7).standard_normal(rate * 2) * 3000).astype("<i2").tobytes()
    whole = run(PcmStream(rate), iter([pcm]))
    assert np.array_equal(run(PcmStream(rate), odd_pieces(pcm)), whole)  # the resampler keeps its state


def test_open_stream_picks_the_stream_of_the_format() -> None:
    pcm = open_stream("pcm_s16le", 8000)
    assert isinstance(pcm, PcmStream) and pcm.rate == 8000
    default = open_stream("pcm_s16le", None)
    assert isinstance(default, PcmStream) and default.rate == 16000
    assert isinstance(open_stream("container", None), ContainerStream)


# --- containers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["speech_en.ogg", "speech_en.webm", "speech_en.mp3", "speech_en.flac"])
def test_a_container_fed_in_small_pieces_decodes_whole(name: str) -> None:
    data = (AUDIO / name).read_bytes()
    samples = run(ContainerStream(), odd_pieces(data, (1000, 17, 4096)))
    assert samples.size / 16000 == pytest.approx(SPEECH_SECONDS, abs=0.1)
    assert np.abs(samples).max() > 0.05  # speech, not silence


@pytest.mark.parametrize("name", ["speech_en.wav", "speech_en.flac", "speech_en_stereo44k.wav"])
def test_a_container_gives_the_samples_of_the_whole_file_decoded_at_once(name: str) -> None:
    data = (AUDIO / name).read_bytes()
    samples = run(ContainerStream(), odd_pieces(data, (777,)))
    assert np.array_equal(samples, decode_samples(AUDIO / name))


def test_a_container_with_no_bytes_gives_no_samples_and_no_error() -> None:
    stream = ContainerStream()
    stream.feed(b"")
    stream.close()
    assert stream.take().size == 0


@pytest.mark.parametrize("name", ["junk.mp3", "not_audio.mp3"])
def test_bytes_that_are_no_audio_fail_with_a_readable_error(name: str) -> None:
    data = (AUDIO / name).read_bytes()
    with pytest.raises(AudioDecodeError) as caught:
        run(ContainerStream(), odd_pieces(data, (1000,)))
    message = str(caught.value)
    assert message.startswith("could not decode the live audio")
    assert "FFmpeg" in message
    assert "Traceback" not in message and "<" not in message


def test_an_m4a_fails_naming_mp4_and_m4a() -> None:
    data = (AUDIO / "speech_en.m4a").read_bytes()
    with pytest.raises(AudioDecodeError) as caught:
        run(ContainerStream(), odd_pieces(data, (1000,)))
    message = str(caught.value)
    assert "MP4" in message and "M4A" in message
    assert "Ogg/Opus" in message  # and says what to send instead


def test_a_failed_stream_keeps_failing() -> None:
    stream = ContainerStream()
    stream.feed((AUDIO / "not_audio.mp3").read_bytes())
    stream.close()
    for _ in range(2):
        with pytest.raises(AudioDecodeError):
            stream.take()


def test_a_stream_cut_mid_frame_and_sent_on_from_elsewhere_decodes_past_the_cut() -> None:
    # a stream URL that dropped: the last piece ends inside an MP3 frame, the next connection starts
    # inside another one; the damaged frame is skipped, what follows decodes
    data = (AUDIO / "speech_en.mp3").read_bytes()
    cut, resumed = len(data) // 3, len(data) // 3 + 1000
    samples = run(ContainerStream(), odd_pieces(data[:cut] + data[resumed:], (1000, 17, 4096)))
    assert samples.size / 16000 == pytest.approx(SPEECH_SECONDS * (len(data) - 1000) / len(data), abs=0.5)

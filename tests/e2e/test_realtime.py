"""OpenAI's Realtime API in transcription mode against a real `cesar serve`, through the `openai` client's own
realtime connection (``client.realtime.connect``): the story streamed at speaking pace as PCM16 at 24 kHz
gives ``delta`` events while it is sent and a ``completed`` transcript per turn (server VAD); G.711 with the
client committing its turns; a wrong key, a malformed event and an unsupported format give OpenAI-shaped
``error`` events; each connection is a job, listed with its transcript.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import openai
import pytest
import wer
from serve_helpers import AUDIO_DIR, running_serve, wait_for

LONG = AUDIO_DIR / "speech_en_long.flac"
SHORT = AUDIO_DIR / "speech_en.wav"
REFERENCE = wer.reference_from_readme((AUDIO_DIR / "README.md").read_text(), "speech_en_long")
KEY = "realtime-test-key"
FRAME_SECONDS = 0.1

pytestmark = [
    pytest.mark.timeout(600),
    # the openai client's sync connection opens websockets' connection the way websockets 17.1 deprecated
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]


def audio_of(path: Path, codec: str, rate: int) -> bytes:
    """``path`` as raw mono ``codec`` bytes (``pcm_s16le``, ``pcm_mulaw``, ``pcm_alaw``) at ``rate``, by
    FFmpeg's libraries (PyAV)."""
    encoder = av.CodecContext.create(codec, "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16"
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    out = bytearray()
    with av.open(str(path)) as container:
        frames = [*container.decode(audio=0), None]
    for frame in frames:
        for resampled in resampler.resample(frame):
            for packet in encoder.encode(resampled):
                out += bytes(packet)
    for packet in encoder.encode(None):
        out += bytes(packet)
    return bytes(out)


@dataclass
class Received:
    event: Any
    sent_seconds: float  # audio sent when it came


@dataclass
class Realtime:
    """One connection of the `openai` client, its events read on a thread of their own."""

    connection: Any
    bytes_per_second: int
    events: list[Received] = field(default_factory=list)
    sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.connection:
                with self._lock:
                    self.events.append(Received(event, self.sent / self.bytes_per_second))
        except Exception:  # the connection closed: nothing more to read
            pass

    def of_type(self, kind: str) -> list[Received]:
        with self._lock:
            return [received for received in self.events if received.event.type == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 60) -> list[Received]:
        wait_for(lambda: len(self.of_type(kind)) >= count, timeout=timeout, what=f"{count} {kind} events")
        return self.of_type(kind)

    def send_audio(self, audio: bytes, *, pace: float | None = 1.0) -> None:
        frame = int(self.bytes_per_second * FRAME_SECONDS)
        started = time.monotonic()
        for offset in range(0, len(audio), frame):
            if pace is not None:
                time.sleep(max(0.0, started + offset / self.bytes_per_second / pace - time.monotonic()))
            chunk = audio[offset : offset + frame]
            self.connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            self.sent += len(chunk)


def connect(url: str, key: str = KEY, query: dict[str, str] | None = None) -> Any:
    client = openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0)
    return client.realtime.connect(extra_query={"intent": "transcription", **(query or {})})


def session(fmt: dict[str, Any], turn_detection: Any, **transcription: Any) -> dict[str, Any]:
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": {"model": "whisper-1", "language": "en", **transcription},
                    "turn_detection": turn_detection,
                }
            },
        },
    }


def realtime_jobs(url: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {KEY}"}
    jobs = httpx.get(f"{url}/jobs", params={"limit": 100}, headers=headers, timeout=30).json()
    return [job for job in jobs if job["source"] == "live" and job["audio_path"].startswith("realtime sess_")]


def test_the_openai_client_transcribes_the_story_live_and_its_errors_are_openai_shaped(
    tmp_path: Path,
) -> None:
    env = {"CESAR_API_KEY": KEY, "CESAR_LIVE_IDLE_SECONDS": "20"}
    with running_serve(
        f"sqlite:///{tmp_path / 'cesar.db'}", log_path=tmp_path / "serve.log", env=env
    ) as serve:
        _errors(serve.url)
        _story(serve.url)
        _committed_g711(serve.url)
        jobs = realtime_jobs(serve.url)
        assert len(jobs) == 2, jobs
        headers = {"Authorization": f"Bearer {KEY}"}
        for job in jobs:
            wait_for(
                lambda job=job: (
                    httpx.get(f"{serve.url}/jobs/{job['id']}", headers=headers).json()["status"]
                    == "completed"
                ),
                timeout=120,
                what="the connection's job to complete",
            )
            text = httpx.get(f"{serve.url}/jobs/{job['id']}/transcript?format=txt", headers=headers).text
            assert text.strip(), job


def _errors(url: str) -> None:
    with connect(url, key="wrong") as connection:
        event = connection.recv()
        assert event.type == "error"
        assert (event.error.type, event.error.code) == ("invalid_request_error", "invalid_api_key")

    with connect(url) as connection:
        created = connection.recv()
        assert created.type == "session.created"
        assert created.session.type == "transcription"
        connection.send_raw("this is not JSON")
        event = connection.recv()
        assert (event.type, event.error.type, event.error.code) == (
            "error",
            "invalid_request_error",
            "invalid_json",
        )
        connection.send(session({"type": "audio/pcm", "rate": 16000}, None))
        event = connection.recv()
        assert event.type == "error"
        assert event.error.param == "session.audio.input.format"
        assert "24000" in event.error.message
        connection.send({"type": "input_audio_buffer.commit", "event_id": "mine"})
        event = connection.recv()
        assert (event.error.code, event.error.event_id) == ("input_audio_buffer_commit_empty", "mine")
        connection.send({"type": "response.create"})
        assert connection.recv().error.param == "type"
        # the connection is still good after errors
        connection.send(session({"type": "audio/pcm", "rate": 24000}, None, prompt="Cesar"))
        updated = connection.recv()
        assert updated.type == "session.updated"
        assert updated.session.audio.input.turn_detection is None
    assert realtime_jobs(url) == [], "no audio, no job"


def _story(url: str) -> None:
    """The story at speaking pace, turns found by server VAD."""
    audio = audio_of(LONG, "pcm_s16le", 24000)
    vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
    with connect(url) as connection:
        stream = Realtime(connection, bytes_per_second=48000)
        (created,) = stream.wait("session.created")
        connection.send(session({"type": "audio/pcm", "rate": 24000}, vad))
        stream.wait("session.updated")
        stream.send_audio(audio)
        sent_seconds = len(audio) / 48000
        stream.send_audio(bytes(48000), pace=None)  # a second of silence: the last turn ends
        started = stream.of_type("input_audio_buffer.speech_started")
        wait_for(
            lambda: (
                len(stream.of_type("conversation.item.input_audio_transcription.completed")) >= len(started)
            ),
            timeout=120,
            what="every turn completed",
        )
        deltas = stream.of_type("conversation.item.input_audio_transcription.delta")
        completed = [r.event for r in stream.of_type("conversation.item.input_audio_transcription.completed")]
        stopped = stream.of_type("input_audio_buffer.speech_stopped")
        committed = stream.of_type("input_audio_buffer.committed")

    assert f"realtime {created.event.session.id}" in [job["audio_path"] for job in realtime_jobs(url)]
    assert len(completed) >= 3, "the story has pauses: several turns"
    assert len(started) == len(stopped) == len(committed) == len(completed)
    early = [received for received in deltas if received.sent_seconds < sent_seconds]
    assert len(early) >= len(deltas) // 2, "deltas while the audio is still being sent"
    # deltas and completed pair by item id, in order, and tell the same words
    items = [event.item_id for event in completed]
    assert len(set(items)) == len(items)
    assert [r.event.item_id for r in started] == items
    for event in completed:
        said = "".join(r.event.delta for r in deltas if r.event.item_id == event.item_id)
        assert wer.word_error_rate(event.transcript, said) <= 0.5, (said, event.transcript)
        assert event.usage.type == "duration"
    assert [r.event.previous_item_id for r in committed] == [None, *items[:-1]]
    starts = [r.event.audio_start_ms for r in started]
    assert starts == sorted(starts)
    text = " ".join(event.transcript for event in completed)
    error = wer.word_error_rate(REFERENCE, text)
    assert error <= 0.20, (error, text)
    said = " ".join(r.event.delta for r in deltas)
    assert wer.word_error_rate(REFERENCE, said) <= 0.30, said


def _committed_g711(url: str) -> None:
    """μ-law at 8 kHz, no turn detection: the client commits, and gets that turn's transcript."""
    audio = audio_of(SHORT, "pcm_mulaw", 8000)
    with connect(url) as connection:
        stream = Realtime(connection, bytes_per_second=8000)
        connection.send(session({"type": "audio/pcmu"}, None))
        stream.wait("session.updated")
        stream.send_audio(audio, pace=None)
        connection.input_audio_buffer.commit()
        (done,) = stream.wait("conversation.item.input_audio_transcription.completed", timeout=120)
        assert not stream.of_type("input_audio_buffer.speech_started"), "no VAD: no speech events"
        assert stream.of_type("input_audio_buffer.committed")[0].event.item_id == done.event.item_id
    words = wer.normalise(done.event.transcript).split()
    assert len(words) >= 3, done.event.transcript

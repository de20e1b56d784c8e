"""The rest of ``/v1/realtime``'s protocol against a real `cesar serve` (real Whisper, a 7 s sentence sent at
once): the beta ``transcription_session.update`` with A-law, ``clear``, the key in the browser clients'
subprotocol, settings that cannot change once audio was sent, and the connection's webhook."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wer
from serve_helpers import AUDIO_DIR, running_serve, wait_for
from test_realtime import KEY, Realtime, audio_of, connect, session
from websockets.sync.client import connect as ws_connect

SPEECH = AUDIO_DIR / "speech_en.wav"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on loopback: its URL and the bodies it got."""
    received: list[dict[str, Any]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_the_rest_of_the_realtime_protocol(tmp_path: Path, hooks: tuple[str, list[dict[str, Any]]]) -> None:
    hook_url, received = hooks
    env = {"CESAR_API_KEY": KEY, "CESAR_LIVE_IDLE_SECONDS": "3"}
    with running_serve(
        f"sqlite:///{tmp_path / 'cesar.db'}", log_path=tmp_path / "serve.log", env=env
    ) as serve:
        _beta_alaw_with_a_clear_and_a_webhook(serve.url, hook_url, received)
        _the_key_in_a_subprotocol(serve.url)
        _settings_fixed_once_audio_came(serve.url)


def _beta_alaw_with_a_clear_and_a_webhook(url: str, hook_url: str, received: list[dict[str, Any]]) -> None:
    audio = audio_of(SPEECH, "pcm_alaw", 8000)
    with connect(url, query={"callback_url": hook_url}) as connection:
        stream = Realtime(connection, bytes_per_second=8000)
        connection.send_raw(
            json.dumps(
                {
                    "type": "transcription_session.update",
                    "session": {
                        "input_audio_format": "g711_alaw",
                        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": None,
                    },
                }
            )
        )
        (updated,) = stream.wait("transcription_session.updated")
        assert updated.event.session["input_audio_format"] == "g711_alaw"  # a type the client does not know
        stream.send_audio(audio[:8000], pace=None)  # a second, then dropped
        connection.input_audio_buffer.clear()
        stream.wait("input_audio_buffer.cleared")
        stream.send_audio(audio, pace=None)
        connection.input_audio_buffer.commit()
        (done,) = stream.wait("conversation.item.input_audio_transcription.completed", timeout=120)
        committed = stream.of_type("input_audio_buffer.committed")
        assert [r.event.item_id for r in committed] == [done.event.item_id]
    words = wer.normalise(done.event.transcript).split()
    assert words.count("quick") == 1, f"the cleared second is not transcribed: {done.event.transcript}"
    for word in ("fast", "reliable"):  # 8 kHz telephone audio: tiny.en hears less of the rest
        assert word in words, done.event.transcript
    # the connection's job ends (no audio for CESAR_LIVE_IDLE_SECONDS) and its webhook is delivered
    wait_for(lambda: received, timeout=120, what="the webhook")
    assert received[0]["status"] == "completed"
    assert received[0]["audio_path"].startswith("realtime sess_")


def _the_key_in_a_subprotocol(url: str) -> None:
    """Browsers cannot send headers: OpenAI's browser clients put the key in a subprotocol."""
    ws_url = url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    with ws_connect(ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
    with ws_connect(ws_url, subprotocols=["realtime", "openai-insecure-api-key.wrong"]) as ws:  # type: ignore[list-item]
        event = json.loads(ws.recv(timeout=30))
        assert (event["type"], event["error"]["code"]) == ("error", "invalid_api_key")


def _settings_fixed_once_audio_came(url: str) -> None:
    audio = audio_of(SPEECH, "pcm_s16le", 24000)
    with connect(url) as connection:
        stream = Realtime(connection, bytes_per_second=48000)
        connection.send(session({"type": "audio/pcm", "rate": 24000}, None))
        stream.wait("session.updated")
        stream.send_audio(audio[:48000], pace=None)
        connection.send(session({"type": "audio/pcm", "rate": 24000}, None, language="de"))
        (error,) = stream.wait("error")
        assert (error.event.error.code, error.event.error.param) == ("invalid_value", "session")
        assert "language" in error.event.error.message
        vad: Any = {"type": "server_vad", "silence_duration_ms": 300}
        connection.send(session({"type": "audio/pcm", "rate": 24000}, vad))
        updated = stream.wait("session.updated", count=2)[-1].event
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 300
        assert updated.session.job_id, "the job the first audio opened"
        connection.send({"type": "input_audio_buffer.append", "audio": "not base64!"})
        (_, bad) = stream.wait("error", count=2)
        assert (bad.event.error.code, bad.event.error.param) == ("invalid_value", "audio")

"""Live sessions' limits and refusals against a real `cesar serve` (one worker with one live slot, a 2 s
idle limit and 4 s of audio at most): every refusal is an ``error`` event and a close code, and nothing is
left running or queued."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_support import BYTES_PER_SECOND, LiveSession, pcm_of, ws_url
from serve_helpers import AUDIO_DIR, CesarProcess, running_serve, wait_for
from websockets.sync.client import connect

SPEECH = AUDIO_DIR / "speech_en.wav"  # 7.2 s

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    tmp = tmp_path_factory.mktemp("live_limits")
    env = {
        "CESAR_LIVE_SESSIONS": "1",
        "CESAR_LIVE_IDLE_SECONDS": "2",
        "CESAR_LIVE_MAX_SECONDS": "4",
        "CESAR_LIVE_START_SECONDS": "2",
    }
    with running_serve(f"sqlite:///{tmp / 'cesar.db'}", log_path=tmp / "serve.log", env=env) as process:
        yield process


def live_jobs(serve: CesarProcess, status: str) -> list[dict[str, Any]]:
    jobs = httpx.get(f"{serve.url}/jobs", params={"status": status, "limit": 100}, timeout=10).json()
    return [job for job in jobs if job["source"] == "live"]


def refused(serve: CesarProcess, first: Any, *, binary: bool = False) -> tuple[dict[str, Any], int | None]:
    """Send ``first`` as the first message; the error event and the close code."""
    with connect(ws_url(serve.url), compression=None) as ws:
        if binary:
            ws.send(first)
        else:
            ws.send(first if isinstance(first, str) else json.dumps(first))
        event = json.loads(ws.recv(timeout=30))
        with pytest.raises(Exception):  # noqa: B017 - the server closes: ConnectionClosed
            ws.recv(timeout=30)
        close = ws.protocol.close_rcvd
    return event, None if close is None else close.code


@pytest.mark.parametrize(
    ("first", "binary", "names"),
    [
        (b"\x00\x01", True, "not JSON"),
        ("{not json", False, "not JSON"),
        ({"type": "hello"}, False, '"start"'),
        ({"type": "start", "model": "no-such-model"}, False, "no-such-model"),
        ({"type": "start", "diarize": True, "num_speakers": 0}, False, "num_speakers"),
        ({"type": "start", "audio": {"format": "pcm_s16le", "sample_rate": 100}}, False, "sample_rate"),
        ({"type": "resume", "session_id": "0193aaaa-0000-7000-8000-000000000000"}, False, "no live session"),
    ],
)
def test_a_bad_first_message_is_an_error_event_and_close_1008(
    serve: CesarProcess, first: Any, binary: bool, names: str
) -> None:
    before = len(live_jobs(serve, "cancelled")) + len(live_jobs(serve, "error"))
    event, code = refused(serve, first, binary=binary)
    assert event["type"] == "error"
    assert names in event["message"], event
    assert code == 1008
    assert live_jobs(serve, "queued") == [] and live_jobs(serve, "processing") == []
    assert len(live_jobs(serve, "cancelled")) + len(live_jobs(serve, "error")) == before, "no job was made"


def test_audio_ffmpeg_cannot_read_fails_the_session_with_an_error_event(serve: CesarProcess) -> None:
    session = LiveSession(ws_url(serve.url))
    assert session.start(audio={"format": "container"})["type"] == "session"
    session.send_audio((AUDIO_DIR / "junk.mp3").read_bytes(), pace=None)
    session.stop()
    final = session.wait_final(timeout=60)["job"]
    error = session.first("error")
    assert error is not None and "could not decode the live audio" in error["message"]
    assert final["status"] == "error"
    assert session.closes[-1][0] == 1000


def test_a_second_session_with_no_free_slot_is_refused_within_seconds(serve: CesarProcess) -> None:
    first = LiveSession(ws_url(serve.url))
    assert first.start()["type"] == "session"  # holds the one live slot, sending silence meanwhile
    sender = threading.Thread(target=first.send_audio, args=(bytes(8 * BYTES_PER_SECOND),), daemon=True)
    sender.start()
    try:
        started = time.monotonic()
        second = LiveSession(ws_url(serve.url))
        answer = second.start()
        waited = time.monotonic() - started
        assert answer["type"] == "error" and answer["code"] == "no_worker", answer
        assert "try again later" in answer["message"]
        wait_for(lambda: second.closes, timeout=10, what="the close")
        assert second.closes[-1][0] == 1013
        assert waited < 30  # CESAR_LIVE_START_SECONDS is 2: a refusal, not a hang
        assert live_jobs(serve, "queued") == [], "the refused session is not left queued"
    finally:
        sender.join()
        first.stop()
        first.wait_final(timeout=60)


def test_a_silent_client_is_ended_after_the_idle_time_with_what_was_said(serve: CesarProcess) -> None:
    pcm = pcm_of(SPEECH)
    session = LiveSession(ws_url(serve.url))
    assert session.start(word_timestamps=False)["type"] == "session"
    session.send_audio(pcm, pace=None, until=3 * BYTES_PER_SECOND)  # "The quick brown fox jumps ..."
    final = session.wait_final(timeout=60)["job"]  # no stop: the 2 s idle limit ends it
    assert final["status"] == "completed"
    assert "quick" in final["result_text"].lower()
    assert final["duration"] == pytest.approx(3.0, abs=0.05)


def test_a_client_gone_without_stop_leaves_a_completed_session(serve: CesarProcess) -> None:
    session = LiveSession(ws_url(serve.url))
    answer = session.start()
    session.send_audio(pcm_of(SPEECH), pace=None, until=3 * BYTES_PER_SECOND)
    session.close()
    url = f"{serve.url}/jobs/{answer['session_id']}"
    job = wait_for(
        lambda: (found := httpx.get(url, timeout=10).json())["status"] == "completed" and found,
        timeout=60,
        what="the session to end by itself",
    )
    assert "quick" in job["result_text"].lower()


def test_a_session_ends_at_its_maximum_length(serve: CesarProcess) -> None:
    session = LiveSession(ws_url(serve.url))
    assert session.start()["type"] == "session"
    session.send_audio(pcm_of(SPEECH), pace=None)  # 7.2 s; the server takes 4
    final = session.wait_final(timeout=60)["job"]  # no stop needed
    assert final["status"] == "completed"
    assert final["duration"] == pytest.approx(4.0, abs=0.05)
    assert "reliable" not in final["result_text"].lower()  # said after 4 s


def test_cesar_live_streams_a_file_and_writes_the_transcript(serve: CesarProcess, tmp_path: Path) -> None:
    import subprocess

    from serve_helpers import CESAR, cesar_env

    out = tmp_path / "speech.txt"
    done = subprocess.run(
        [CESAR, "live", str(SPEECH), "--server", serve.url, "--realtime", "-o", str(out)],
        env=cesar_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.lower()
    assert "lazy" in printed or "quick" in printed, done.stdout
    assert "\r" not in done.stdout, "not a terminal: confirmed lines only"
    assert "quick" in out.read_text().lower()


def test_the_readmes_python_client_runs(serve: CesarProcess, tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    client = next(block for block in blocks if "/live" in block)
    assert len([line for line in client.splitlines() if line.strip()]) <= 15, "a 15-line client"
    script = tmp_path / "client.py"
    script.write_text(
        client.replace("ws://127.0.0.1:5000", ws_url(serve.url).removesuffix("/live")).replace(
            '"talk.wav"', repr(str(SPEECH))
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("session "), done.stdout
    assert "quick" in done.stdout.lower(), done.stdout


def test_without_the_api_key_the_handshake_is_refused(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus

    db = f"sqlite:///{tmp_path / 'cesar.db'}"
    env = {"CESAR_API_KEY": "s3cret"}
    with running_serve(db, log_path=tmp_path / "serve.log", workers="0", env=env) as serve:
        with pytest.raises(InvalidStatus) as refused, connect(ws_url(serve.url)):
            pass
        assert refused.value.response.status_code == 403
        headers = {"Authorization": "Bearer s3cret"}
        with connect(ws_url(serve.url), additional_headers=headers) as ws:
            ws.send(json.dumps({"type": "start"}))
            answer = json.loads(ws.recv(timeout=30))
        assert answer["code"] == "no_worker"  # past the key: refused only because no worker runs


def test_the_protocol_is_described_at_docs(serve: CesarProcess) -> None:
    description = httpx.get(f"{serve.url}/docs/openapi.json", timeout=10).json()["info"]["description"]
    assert "GET /live" in description
    for word in (
        '"type": "start"',
        '"type": "resume"',
        "tentative",
        "segment",
        "final",
        "1013",
        "audio_bytes",
    ):
        assert word in description, word

"""Live stream URLs against a real `cesar serve` (real tiny.en, two workers) and the local stream server:
an HLS playlist that grows, transcribed while it plays; an Icecast-like MP3 stream dropped midway and
reconnected, its gap in the JSON transcript (through `cesar submit --live`); a session cancelled
mid-stream; a segment that points at a private address, refused; a session whose worker is killed, taken
over and reconnected.

The worker's address policy is the strict one with only the stream server's address allowed
(``CESAR_ALLOW_PRIVATE_NETWORKS=127.0.0.1/32``): a second server on 127.0.0.2 is private and refused.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from httpx_sse import connect_sse
from serve_helpers import AUDIO_DIR, CESAR, CesarProcess, Client, cesar_env, running_serve, wait_for
from stream_server import Hls, Icecast, hls_segments, mp3_bytes, stream_server

from cesar_common.db.records import LiveEnd
from cesar_common.db.store import JobStore

SPEECH = AUDIO_DIR / "speech_en.wav"  # 7.2 s: "The quick brown fox ... lazy dog. Transcription ... reliable."
ENDED = ("completed", "error", "cancelled")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('live_urls') / 'cesar.db'}"


@pytest.fixture(scope="module")
def serve(db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    env = {
        "CESAR_ALLOW_PRIVATE_URLS": "false",
        "CESAR_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32",
        "CESAR_LIVE_IDLE_SECONDS": "8",
        "CESAR_LIVE_MAX_SECONDS": "60",
    }
    log = tmp_path_factory.mktemp("live_urls_log") / "serve.log"
    with running_serve(db, log_path=log, workers="2", env=env) as process:
        yield process


@pytest.fixture
def client(serve: CesarProcess) -> Iterator[Client]:
    client = Client(serve.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return mp3_bytes(SPEECH)


def worker_pid(db: str, job_id: str) -> int:
    """The worker process holding the session (its worker id is ``host:pid``)."""
    store = JobStore.from_url(db)
    try:
        worker_id = wait_for(lambda: store.get_job(job_id).worker_id, timeout=60, what="the session's worker")
    finally:
        store.close()
    return int(str(worker_id).rsplit(":", 1)[1])


def live_state_ended(db: str, job_id: str) -> LiveEnd | None:
    store = JobStore.from_url(db)
    try:
        state = store.live_state(job_id)
    finally:
        store.close()
    assert state is not None
    return state.ended


def test_an_hls_live_stream_is_transcribed_while_it_plays(
    serve: CesarProcess, client: Client, db: str
) -> None:
    segments = hls_segments(SPEECH, repeat=2)  # 14.4 s in ~2 s segments, one more out every ~2 s
    hls = Hls(segments)
    with stream_server(radio=hls) as server:
        job_id = client.submit_url(f"{server.url}/radio.m3u8", live=True, model="tiny.en", language="en")
        events: list[tuple[str, dict[str, Any], int]] = []  # each with the segments the server had out

        def follow() -> None:
            with (
                httpx.Client(base_url=serve.url, timeout=60) as http,
                connect_sse(http, "GET", f"/jobs/{job_id}/events") as source,
            ):
                for sse in source.iter_sse():
                    events.append((sse.event, json.loads(sse.data), hls.published()))
                    if sse.event == "end":
                        return

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        job = client.wait_status(job_id, ENDED, timeout=120)
        follower.join(30)

    assert job["status"] == "completed", job
    assert (job["source"], job["audio_path"]) == ("live", f"{server.url}/radio.m3u8")
    live = [(data["text"], out) for kind, data, out in events if kind == "segment"]
    assert any(out < len(segments) for _text, out in live), f"a segment while the stream played: {live}"
    assert "lazy" in " ".join(text for text, _out in live).lower()
    assert job["duration"] == pytest.approx(sum(duration for _data, duration in segments), abs=0.5)
    transcript = json.loads(client.transcript(job_id, "json"))
    text = transcript["text"].lower()
    assert text.count("lazy") == 2 and text.count("reliable") == 2, "every segment once"
    assert "gaps" not in transcript
    assert live_state_ended(db, job_id) is LiveEnd.STREAM_END  # #EXT-X-ENDLIST
    assert server.requests.count("/radio/seg0.ts") == 1


def test_a_dropped_stream_is_reconnected_and_its_gap_is_in_the_transcript(
    serve: CesarProcess, mp3: bytes
) -> None:
    radio = Icecast(mp3, seconds=7.2, drop_after=3.0, refusals=1)  # cut after "... the lazy dog."
    with stream_server(radio=radio) as server:
        url = f"{server.url}/radio.mp3"
        argv = [CESAR, "submit", "--live", url, "--max-seconds", "8", "--language", "en", "--wait"]
        done = subprocess.run(
            [*argv, "--format", "json", "--server", serve.url],
            env=cesar_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: server.listening("radio") == 0, timeout=10, what="the worker to hang up")
    transcript = json.loads(done.stdout)
    assert transcript["duration"] == pytest.approx(8.0, abs=0.05)  # --max-seconds
    [gap] = transcript["gaps"]
    assert gap["reason"] == "127.0.0.1 closed the stream"
    # where in the audio: estimated from the bytes stored before the drop and the seconds they decoded to
    # (an MP3's frames and a decoder's look-ahead make it approximate), never after the drop
    assert 1.5 <= gap["at"] <= 3.5
    assert gap["seconds"] >= 1.5  # a wait of 0.5 s, a refused try, a wait of 1 s
    text = transcript["text"].lower()
    assert "reliable" in text, "the words after the drop"
    assert server.requests.count("/radio.mp3") == 3


def test_a_cancelled_stream_session_stops_at_once(client: Client, mp3: bytes) -> None:
    radio = Icecast(mp3, seconds=7.2)
    with stream_server(radio=radio) as server:
        job_id = client.submit_url(f"{server.url}/radio.mp3", live=True)
        wait_for(
            lambda: radio.sent_seconds() >= 2 and client.job(job_id)["status"] == "processing",
            timeout=60,
            what="the stream to play",
        )
        assert client.http.post(f"/jobs/{job_id}/cancel").status_code == 202
        job = client.wait_status(job_id, ENDED, timeout=30)
        wait_for(lambda: server.listening("radio") == 0, timeout=10, what="the worker to hang up")
    assert job["status"] == "cancelled"
    assert server.requests == ["/radio.mp3"]


def test_a_segment_pointing_at_a_private_address_is_refused_there(client: Client) -> None:
    segments = hls_segments(SPEECH)
    with stream_server("127.0.0.2", radio=Hls(segments)) as private, stream_server() as server:
        inside = f"{private.url}/radio/seg2.ts"
        server.streams["radio"] = Hls(
            segments, paced=False, uri_of=lambda index: inside if index == 2 else None
        )
        job_id = client.submit_url(f"{server.url}/radio.m3u8", live=True)
        job = client.wait_status(job_id, ENDED, timeout=60)
    assert (job["status"], job["error_code"]) == ("error", "url_refused"), job
    assert job["error_message"].startswith(
        f"the stream's segment {inside} was refused: 127.0.0.2, a loopback"
    )
    assert private.requests == [], "nothing reached the private address"
    assert server.requests == ["/radio.m3u8", "/radio/seg0.ts", "/radio/seg1.ts"]


def test_a_session_whose_worker_dies_is_taken_over_and_the_time_lost_is_a_gap(
    client: Client, db: str, mp3: bytes
) -> None:
    radio = Icecast(mp3, seconds=7.2)
    with stream_server(radio=radio) as server:
        job_id = client.submit_url(f"{server.url}/radio.mp3", live=True, max_seconds=7, language="en")
        wait_for(lambda: radio.sent_seconds() >= 2, timeout=60, what="the stream to play")
        psutil.Process(worker_pid(db, job_id)).kill()
        sent = radio.sent_seconds()  # the worker had stored less: what it gathered last died with it
        job = client.wait_status(job_id, ENDED, timeout=120)
    assert job["status"] == "completed", job
    assert job["attempts"] >= 2
    assert server.requests.count("/radio.mp3") >= 2, "the next worker reconnected"
    transcript = json.loads(client.transcript(job_id, "json"))
    assert transcript["duration"] == pytest.approx(7.0, abs=0.05)
    [gap] = transcript["gaps"]
    assert gap["reason"] == "the worker following the stream was lost or stopped; another one reconnected"
    # CESAR_LEASE_SECONDS (4) ran out before another worker took it, counted from the lease's last extension,
    # which comes every third of it: at least two thirds of it passed after the worker's last audio
    assert gap["seconds"] >= 4 * 2 / 3 - 0.25
    assert 0.5 <= gap["at"] <= sent

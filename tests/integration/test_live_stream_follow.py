"""A live session's stream URL followed by a worker's :class:`StreamFollower`, in this process, against the
local stream server (no model: what is asserted is the audio stored, the gaps and the ends). The worker's
address policy is the strict one with the stream server's own address allowed (127.0.0.1/32)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from stream_server import Hls, Icecast, hls_segments, mp3_bytes, stream_server

from cesar_common.db.records import AudioFormat, JobSource, LiveEnd, LiveState, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, DownloadError, URLRefusedError
from cesar_common.settings import Settings
from cesar_worker.live_stream_url import StreamFollower

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "speech_en.wav"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def segments() -> list[tuple[bytes, float]]:
    return hls_segments(SPEECH)


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return mp3_bytes(SPEECH)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[JobStore]:
    store = JobStore.from_url(sqlite_url)
    yield store
    store.close()


def settings(sqlite_url: str, idle: float = 3.0) -> Settings:
    return Settings(
        database_url=sqlite_url,
        live_idle_seconds=idle,
        allow_private_urls=False,
        allow_private_networks=[ip_network("127.0.0.1/32")],
    )


def follower(store: JobStore, url: str, config: Settings, bytes_per_second: float = 4000.0) -> StreamFollower:
    new = NewJob(source=JobSource.LIVE, options=TranscribeOptions(model="tiny.en"), source_url=url)
    job, _ = store.open_live_session(new, AudioFormat.CONTAINER, None)

    def heard() -> tuple[int, float]:  # as a session that read and decoded everything stored
        stream = state(store, job.id)
        return stream.chunks, stream.audio_bytes / bytes_per_second

    return StreamFollower(store, config, job, heard=heard)


def state(store: JobStore, job_id: str) -> LiveState:
    found = store.live_state(job_id)
    assert found is not None
    return found


def failure(following: StreamFollower) -> CesarError | None:
    try:
        following.check()
    except CesarError as exc:
        return exc
    return None


def stored(store: JobStore, job_id: str) -> bytes:
    return b"".join(store.live_audio(job_id, from_seq=0))


def wait_until(condition: Any, what: str, timeout: float = 60) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_an_ended_hls_playlist_is_stored_segment_by_segment_and_ends_the_session(
    store: JobStore, sqlite_url: str, segments: list[tuple[bytes, float]]
) -> None:
    with stream_server(radio=Hls(segments, paced=False)) as server:
        following = follower(store, f"{server.url}/radio.m3u8", settings(sqlite_url))
        following.start()
        job_id = following.job_id
        ended = wait_until(lambda: state(store, job_id).ended, "the end of the stream")
        following.stop()
        following.check()
    assert ended is LiveEnd.STREAM_END
    assert store.live_audio(job_id, from_seq=0) == [data for data, _ in segments]  # whole, in order, once
    assert state(store, job_id).gaps == ()


def test_a_segment_whose_name_reaches_a_private_address_is_refused_when_connecting(
    store: JobStore, sqlite_url: str, segments: list[tuple[bytes, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "cdn.test":  # a name no check of the URL alone can judge
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with stream_server("127.0.0.2", radio=Hls(segments)) as private, stream_server() as server:
        inside = f"http://cdn.test:{private.port}/radio/seg2.ts"
        server.streams["radio"] = Hls(segments, paced=False, uri_of=lambda i: inside if i == 2 else None)
        following = follower(store, f"{server.url}/radio.m3u8", settings(sqlite_url))
        following.start()
        error = wait_until(lambda: failure(following), "the refusal")
        following.stop()
        assert private.requests == [], "nothing reached the private address"
    assert isinstance(error, URLRefusedError)
    assert str(error).startswith(f"the stream's segment {inside} was refused: cdn.test resolves to 127.0.0.2")
    assert store.live_audio(following.job_id, from_seq=0) == [segments[0][0], segments[1][0]]  # those before


def test_a_dropped_stream_is_reconnected_without_losing_or_repeating_a_byte_and_the_gap_is_kept(
    store: JobStore, sqlite_url: str, mp3: bytes
) -> None:
    radio = Icecast(mp3, seconds=7.2, drop_after=2.0, refusals=1)
    with stream_server(radio=radio) as server:
        following = follower(
            store, f"{server.url}/radio.mp3", settings(sqlite_url, idle=10.0), radio.bytes_per_second
        )
        following.start()
        job_id = following.job_id
        wait_until(lambda: radio.dropped and radio.sent_seconds() >= 2.5, "audio after the drop")
        following.stop()
        wait_until(lambda: server.listening("radio") == 0, "the listener to hang up")
    assert server.requests.count("/radio.mp3") == 3  # the first connection, one refused, the one again
    audio = stored(store, job_id)
    assert audio == (mp3 * 2)[: len(audio)], "the stream as sent: nothing lost, nothing twice"
    [gap] = state(store, job_id).gaps
    assert gap["reason"] == "127.0.0.1 closed the stream"
    assert gap["seconds"] >= 1.5  # waits of 0.5 and 1 s
    assert gap["at"] == pytest.approx(2.0, abs=0.01)  # where the server cut it off


def test_a_stream_that_does_not_come_back_ends_the_session_idle_with_its_gap(
    store: JobStore, sqlite_url: str, mp3: bytes
) -> None:
    radio = Icecast(mp3, seconds=7.2, drop_after=1.0, refusals=1000)
    with stream_server(radio=radio) as server:
        following = follower(store, f"{server.url}/radio.mp3", settings(sqlite_url, idle=2.0))
        following.start()
        ended = wait_until(lambda: state(store, following.job_id).ended, "the session to end")
        following.stop()
        following.check()
        tries = server.requests.count("/radio.mp3")
    assert ended is LiveEnd.IDLE
    [gap] = state(store, following.job_id).gaps
    assert gap["reason"] == "127.0.0.1 closed the stream"
    assert gap["seconds"] >= 1.5  # waits of 0.5 and 1 s; the next, of 2 s, would pass the idle time
    assert tries == 3  # the first connection and two tries


def test_a_url_that_is_not_there_fails_at_once_and_one_that_never_answers_after_the_idle_time(
    store: JobStore, sqlite_url: str
) -> None:
    with stream_server() as server:
        missing = follower(store, f"{server.url}/nothing.mp3", settings(sqlite_url))
        missing.start()
        error = wait_until(lambda: failure(missing), "the refusal")
        missing.stop()
    assert isinstance(error, DownloadError)
    assert str(error) == f"the stream URL {server.url}/nothing.mp3 answered 404 Not Found"
    assert server.requests == ["/nothing.mp3"]

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    silent = follower(store, f"http://127.0.0.1:{port}/radio.mp3", settings(sqlite_url, idle=1.0))
    silent.start()
    error = wait_until(lambda: failure(silent), "giving up")
    silent.stop()
    assert isinstance(error, DownloadError)
    assert str(error) == (
        "could not follow the stream at 127.0.0.1: could not connect to 127.0.0.1 (Connection refused) "
        "(tried for 1 s, CESAR_LIVE_IDLE_SECONDS)"
    )
    assert state(store, silent.job_id).ended is None  # the session fails with the error: no audio ended


def test_stop_hangs_up_within_a_tick(store: JobStore, sqlite_url: str, mp3: bytes) -> None:
    radio = Icecast(mp3, seconds=7.2)
    with stream_server(radio=radio) as server:
        following = follower(store, f"{server.url}/radio.mp3", settings(sqlite_url))
        following.start()
        wait_until(lambda: state(store, following.job_id).chunks >= 2, "audio")
        assert following.stop(), "the thread ended"
        wait_until(lambda: server.listening("radio") == 0, "the listener to hang up")
    following.check()

"""Live jobs in one process: partial transcripts, the segment count, the session cookie for browsers, and
a subscriber that stops reading is cut off rather than buffered for."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from api_helpers import Api, error_body, running_api
from fake_worker import FakeEngine

from cesar_api import event_hub
from cesar_common.db.records import JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings
from cesar_worker.worker import Worker


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with running_api(db_url, api_key="secret-key") as running:
        running.client.headers["Authorization"] = "Bearer secret-key"
        yield running


@pytest.fixture
def worker(db_url: str) -> Iterator[threading.Event]:
    """A worker with the fake engine (``slow:S`` prompts decode a segment every quarter second)."""
    stop = threading.Event()
    store = JobStore.from_url(db_url)
    running = Worker(Settings(database_url=db_url), store, FakeEngine(), worker_id="live", stop_event=stop)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(10)
    store.close()


def slow_job(api: Api, seconds: float) -> str:
    options = TranscribeOptions(model="tiny.en", initial_prompt=f"slow:{seconds}")
    return api.store.create_job(NewJob(JobSource.UPLOAD, options, filename="a.wav"), b"RIFF").id


def wait_segments(api: Api, job_id: str, count: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while (job := api.client.get(f"/jobs/{job_id}").json())["segment_count"] < count:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job  # type: ignore[no-any-return]


def test_a_partial_transcript_while_the_job_runs(api: Api, worker: threading.Event) -> None:
    job_id = slow_job(api, 6)
    job = wait_segments(api, job_id, 2)
    assert job["status"] == "processing"
    body = error_body(api.client.get(f"/jobs/{job_id}/transcript"), 409)
    assert "partial=true" in body["detail"]
    partial = api.client.get(f"/jobs/{job_id}/transcript", params={"partial": "true", "format": "json"})
    assert partial.status_code == 200, partial.text
    segments = partial.json()["segments"]
    assert len(segments) >= 2 and segments[0]["text"] == "part 0"
    api.client.post(f"/jobs/{job_id}/cancel")


def test_the_final_segment_count_is_the_transcript_s(api: Api, worker: threading.Event) -> None:
    job_id = slow_job(api, 1)
    deadline = time.monotonic() + 30
    while (job := api.client.get(f"/jobs/{job_id}").json())["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    full = api.client.get(f"/jobs/{job_id}/transcript", params={"format": "json"}).json()
    assert job["segment_count"] == len(full["segments"]) >= 3
    assert api.store.live_segments(job_id) == []  # the live rows went with the job's end


def test_a_browser_session_cookie_opens_the_event_streams_only(api: Api) -> None:
    job_id = slow_job(api, 1)
    anonymous = api.client.__class__(base_url=api.url, timeout=10)
    error_body(anonymous.get(f"/jobs/{job_id}/events"), 401)
    opened = anonymous.post("/session", headers={"Authorization": "Bearer secret-key"})
    assert opened.status_code == 204
    cookie = opened.headers["set-cookie"]
    assert "cesar_session=" in cookie and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "secret-key" not in cookie
    with anonymous.stream("GET", f"/jobs/{job_id}/events") as stream:  # the cookie, no header
        assert stream.status_code == 200
        assert next(stream.iter_lines()).startswith("id: ")
    error_body(anonymous.get("/jobs"), 401)  # the cookie opens nothing else
    assert anonymous.delete("/session").status_code == 204
    error_body(anonymous.get(f"/jobs/{job_id}/events"), 401)
    anonymous.close()


def test_a_subscriber_that_stops_reading_is_cut_off_not_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_hub, "QUEUE_EVENTS", 4)
    topic = event_hub._Topic("job", attempt=1)
    reader = event_hub._Subscriber()
    topic.subscribers.add(reader)
    for seq in range(100):  # a job publishing while this reader reads nothing
        topic.publish("segment", seq, b"event: segment\ndata: {}\n\n", {})
        topic.published += 1
    assert reader.cut_off and reader.queue.qsize() == 4  # bounded: the rest was never queued

    async def drain() -> list[bytes]:
        hub = event_hub.EventHub.__new__(event_hub.EventHub)
        return [chunk async for chunk in hub._follow(reader, event_hub.Position(1, 0))]

    chunks = asyncio.run(drain())
    # what it had queued, then the stream ends: the client reconnects with its last id and resumes
    assert [chunk.split(b"\n")[0] for chunk in chunks] == [b"id: 1.1", b"id: 1.2", b"id: 1.3", b"id: 1.4"]


def test_a_requeued_job_starts_its_segments_over(db_url: str) -> None:
    store = JobStore.from_url(db_url)
    options = TranscribeOptions(model="tiny.en")
    job = store.create_job(NewJob(JobSource.URL, options, source_url="https://a.b/c"), None)
    assert store.claim_work("w", lease_seconds=60) is not None
    store.report_progress(job.id, "w", 0.5, segments=[{"id": 0, "start": 0, "end": 1, "text": "a"}])
    assert store.get_job(job.id).segment_count == 1 and len(store.live_segments(job.id)) == 1
    store.release_job(job.id, "w")  # the worker shuts down: the job goes back to the queue
    again = store.get_job(job.id)
    assert (again.status, again.segment_count, store.live_segments(job.id)) == (JobStatus.QUEUED, 0, [])
    store.close()

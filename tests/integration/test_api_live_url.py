"""``POST /transcribe`` with a live stream URL (``"live": true``): a queued live session that names its URL,
with its own maximum length, and the ways such a request is refused (SQLite, PostgreSQL; no worker runs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import PUBLIC_URL, Api, error_body, job_count, running_api

from cesar_common.db.records import AudioFormat, JobSource

STREAM = "https://93.184.215.14/radio/live.m3u8"


@pytest.fixture(scope="module")
def api(api_db: str) -> Iterator[Api]:
    with running_api(api_db, live_max_seconds=7200, live_final_pass=False) as running:
        yield running


@pytest.mark.parametrize("path", ["/transcribe", "/transcribe/url"])
def test_a_live_stream_url_is_a_queued_live_session(api: Api, path: str) -> None:
    body = {"url": STREAM, "live": True, "max_seconds": 90, "model": "tiny.en", "language": "en"}
    response = api.client.post(path, json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert (job["status"], job["source"], job["audio_path"]) == ("queued", "live", STREAM)
    assert job["options"]["language"] == "en"
    assert [listed["id"] for listed in api.client.get("/jobs", params={"limit": 1}).json()] == [job["id"]]
    record = api.store.get_job(job["id"])
    assert (record.source, record.source_url) == (JobSource.LIVE, STREAM)
    state = api.store.live_state(job["id"])
    assert state is not None
    assert (state.audio_format, state.max_seconds, state.chunks) == (AudioFormat.CONTAINER, 90, 0)


def test_without_max_seconds_the_server_maximum_applies_and_a_key_names_one_session(api: Api) -> None:
    headers = {"Idempotency-Key": "radio-live-1"}
    first = api.client.post("/transcribe", json={"url": STREAM, "live": True}, headers=headers)
    again = api.client.post("/transcribe", json={"url": STREAM, "live": True}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    state = api.store.live_state(first.json()["id"])
    assert state is not None and state.max_seconds is None
    other = api.client.post(
        "/transcribe", json={"url": STREAM, "live": True, "max_seconds": 60}, headers=headers
    )
    assert error_body(other, 422)["code"] == "idempotency_key_reused"


def test_a_live_session_can_be_cancelled_while_it_waits(api: Api) -> None:
    job = api.client.post("/transcribe", json={"url": STREAM, "live": True}).json()
    cancelled = api.client.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": PUBLIC_URL, "max_seconds": 60}, "max_seconds is the length of a live stream"),
        ({"url": STREAM, "live": True, "max_seconds": 7201}, "max_seconds is at most 7200 on this server"),
        ({"url": STREAM, "live": True, "max_seconds": 0}, "greater than 0"),
        ({"url": STREAM, "live": True, "diarize": True}, "CESAR_LIVE_FINAL_PASS=false"),
        ({"url": "http://127.0.0.1:8000/live.m3u8", "live": True}, "127.0.0.1, a loopback address"),
        ({"url": "http://169.254.169.254/live.m3u8", "live": True}, "never allowed"),
        ({"url": "ftp://radio.example/live", "live": True}, "only http and https"),
        ({"url": STREAM, "live": "sometimes"}, "live"),
    ],
)
def test_what_a_live_stream_request_cannot_be_is_refused(
    api: Api, body: dict[str, object], fragment: str
) -> None:
    before = job_count(api.store)
    response = api.client.post("/transcribe", json=body)
    status = 400 if fragment in ("greater than 0", "live") else 422
    error = error_body(response, status)
    assert fragment in response.text, error
    assert job_count(api.store) == before, "no job was made"

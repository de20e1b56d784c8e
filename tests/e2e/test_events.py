"""Live jobs over HTTP: `GET /jobs/{id}/events` from a real `cesar serve` (real Whisper), with a real SSE
client (httpx-sse), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from dbtools import migrate
from httpx_sse import ServerSentEvent, connect_sse
from psycopg import sql
from serve_helpers import AUDIO_DIR, CesarProcess, Client, running_serve, serving_directory, wait_for

from cesar_common.db.connect import normalize_url

LONG = AUDIO_DIR / "speech_en_long.flac"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def serve(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CesarProcess]:
    """One `cesar serve` (two workers) per backend for the module's tests."""
    tmp = tmp_path_factory.mktemp("events")
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp / 'cesar.db'}", None
    else:
        server = normalize_url(str(request.getfixturevalue("postgres_server_url")))
        schema = f"cesar_ev_{uuid.uuid4().hex[:12]}"
        admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        url = server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
        migrate(url)

        def cleanup() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    try:
        # the default lease: a loaded machine must not make a worker lose its job (a second attempt starts
        # its segments over, which these tests do not follow)
        env = {"CESAR_LEASE_SECONDS": "60"}
        with running_serve(url, log_path=tmp / "serve.log", workers="2", env=env) as process:
            yield process
    finally:
        if cleanup is not None:
            cleanup()


def events(
    base: str, job_id: str, *, last_event_id: str | None = None, limit: int | None = None
) -> list[ServerSentEvent]:
    """The job's events until `end` (or ``limit`` of them), then the connection is dropped."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    got: list[ServerSentEvent] = []
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(60, connect=10)) as client,
        connect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source.iter_sse():
            got.append(event)
            if event.event == "end" or (limit is not None and len(got) >= limit):
                break
    return got


def segments_of(stream: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in stream if event.event == "segment"]


def final_segments(client: Client, job_id: str) -> list[dict[str, Any]]:
    return json.loads(client.transcript(job_id, "json"))["segments"]  # type: ignore[no-any-return]


def test_the_long_file_streams_its_segments_before_the_end(serve: CesarProcess) -> None:
    client = Client(serve.url)
    job_id = client.upload(LONG)
    stream = events(serve.url, job_id)
    kinds = [event.event for event in stream]
    assert kinds[0] == "job" and kinds[-1] == "end"
    assert kinds.index("end") > kinds.index("segment")
    before_end = [event for event in stream[: kinds.index("end")] if event.event == "segment"]
    assert len(before_end) >= 2
    end = json.loads(stream[-1].data)
    assert end["status"] == "completed" and end["segment_count"] == len(before_end)
    assert segments_of(stream) == final_segments(client, job_id)  # each once, in order, as kept
    # progress moves while the batched pipeline decodes, not only at the end (how many steps a client sees
    # depends on how fast this machine decodes: progress is written at most once a second)
    progress = sorted({json.loads(event.data)["progress"] for event in stream if event.event == "job"})
    assert [value for value in progress if 0 < value < 1], progress
    ids = [event.id for event in stream]
    assert all(ids) and ids == sorted(ids, key=lambda value: tuple(map(int, value.split("."))))
    client.close()


def test_a_reconnect_with_last_event_id_has_no_gap_and_no_duplicate(serve: CesarProcess) -> None:
    client = Client(serve.url)
    job_id = client.upload(LONG)
    first: list[ServerSentEvent] = []
    while not segments_of(first):  # until the first segment arrives, then hang up
        first = events(serve.url, job_id, limit=len(first) + 1)
        if first[-1].event == "end":
            break
    rest = events(serve.url, job_id, last_event_id=first[-1].id)
    assert rest[0].event == "job"  # the state first, then what was missed
    assert json.loads(rest[-1].data)["attempts"] == 1  # one run of the job: the ids resume within it
    assert segments_of(first) + segments_of(rest) == final_segments(client, job_id)
    client.close()


def test_a_cancel_mid_job_ends_the_stream_cancelled(serve: CesarProcess) -> None:
    client = Client(serve.url)
    job_id = client.upload(LONG)
    client.wait_status(job_id, {"processing"}, timeout=120)
    with (
        httpx.Client(base_url=serve.url, timeout=60) as http,
        connect_sse(http, "GET", f"/jobs/{job_id}/events") as source,
    ):
        got: list[ServerSentEvent] = []
        for event in source.iter_sse():
            got.append(event)
            if len(got) == 1:
                assert http.post(f"/jobs/{job_id}/cancel").status_code == 202
            if event.event == "end":
                break
    assert json.loads(got[-1].data)["status"] == "cancelled"
    client.close()


def test_a_failing_job_ends_the_stream_with_its_error(serve: CesarProcess, tmp_path: Path) -> None:
    client = Client(serve.url)
    with serving_directory(tmp_path) as base:  # an empty directory: the worker's download gets a 404
        job_id = client.submit_url(f"{base}/missing.mp3")
        stream = events(serve.url, job_id)
    end = json.loads(stream[-1].data)
    assert stream[-1].event == "end" and end["status"] == "error" and end["error_code"] == "download_failed"
    client.close()


def test_streams_that_stall_or_leave_hold_nothing(serve: CesarProcess) -> None:
    """Readers that leave mid-job, and one that stops reading: afterwards no stream is open and no
    database connection is held (the API's own gauges)."""
    client = Client(serve.url)
    job_id = client.upload(LONG)
    for _ in range(3):
        assert events(serve.url, job_id, limit=1)  # connect, read the first event, hang up
    stalled = httpx.Client(base_url=serve.url, timeout=60)
    stalled_response = stalled.send(stalled.build_request("GET", f"/jobs/{job_id}/events"), stream=True)
    assert stalled_response.status_code == 200  # opened and never read
    # its end, whichever comes (cancelled, or completed already), ends every stream
    assert client.http.post(f"/jobs/{job_id}/cancel").status_code in (202, 409)
    client.wait_all([job_id], timeout=180)
    stalled_response.close()
    stalled.close()

    def settled() -> bool:
        metrics = client.http.get("/metrics").text
        return "cesar_event_streams 0.0" in metrics and "cesar_database_connections_in_use 0.0" in metrics

    wait_for(settled, timeout=30, what="every stream closed and every connection back in the pool")
    client.close()

"""Shared by the API tests: a real uvicorn serving ``create_app`` on a free port, and job fixtures.

The server runs in a thread of the test process (real sockets, real HTTP) so a test can also reach the
store it uses; tests that need a separate process start ``python -m cesar_api`` themselves.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from dbtools import migrate, migrated_schema

from cesar_api.app import create_app
from cesar_common.db.records import (
    Decoding,
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    TranscribeOptions,
)
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings

AUDIO_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
#: a literal public address: passes the URL policy without a DNS lookup (the worker never runs here)
PUBLIC_URL = "https://93.184.215.14/interview.mp3"

#: how the helpers' completed jobs were "decoded"
DECODING = Decoding(device="cpu", compute_type="int8", mode="batched", batch_size=4)
SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 3.2, "text": " The quick brown fox jumps over the lazy dog."},
    {"id": 1, "start": 3.4, "end": 7.1, "text": " Transcription services should be fast and reliable."},
]


#: ``params`` of a module-scoped database fixture: the module's tests run once per backend
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@contextmanager
def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A freshly migrated database shared by one test module (``request.param``: the backend).

    A database per test would cost a migration per test; the API tests share one per module and never
    assume it is empty (they count before and after, or look at their own jobs). PostgreSQL: a schema of
    its own, selected through ``search_path`` on every connection.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api-db') / 'cesar.db'}"
        migrate(url)
        yield url
        return
    with migrated_schema(request.getfixturevalue("postgres_server_url"), "cesar_api") as url:
        yield url


@dataclass
class Api:
    url: str
    client: httpx.Client
    store: JobStore
    settings: Settings


@contextmanager
def running_api(db_url: str, *, websockets: bool = False, **settings: Any) -> Iterator[Api]:
    """``create_app`` on ``db_url`` under uvicorn on 127.0.0.1:<free port>, with an httpx client (and
    WebSockets served when asked)."""
    app_settings = Settings(database_url=db_url, **settings)
    store = JobStore.from_url(db_url)
    app = create_app(app_settings, store)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ws = "websockets-sansio" if websockets else "none"
    config = uvicorn.Config(app, log_level="warning", ws=ws, lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield Api(url=url, client=client, store=store, settings=app_settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


def upload(api: Api, name: str = "speech_en.wav", **fields: str) -> httpx.Response:
    with (AUDIO_DIR / name).open("rb") as audio:
        return api.client.post("/transcribe", files={"file": (name, audio, "audio/wav")}, data=fields)


def url_job(store: JobStore, url: str = PUBLIC_URL, model: str = "tiny.en", owner: str = "") -> JobRecord:
    new = NewJob(source=JobSource.URL, options=TranscribeOptions(model=model), source_url=url, owner=owner)
    return store.create_job(new, None)


def job_count(store: JobStore) -> int:
    """Jobs a client can see (the database is shared by a module's tests: compare before and after)."""
    total, cursor = 0, None
    while True:
        page = store.list_jobs(limit=1000, cursor=cursor)
        total += len(page.jobs)
        if page.next_cursor is None:
            return total
        cursor = page.next_cursor


def processing_job(store: JobStore, worker_id: str = "test-worker", owner: str = "") -> JobRecord:
    """A new job of ``owner`` claimed by ``worker_id``, as a worker would. Other queued jobs are cancelled
    first so the claim takes this one."""
    for queued in store.list_jobs(status=JobStatus.QUEUED, limit=1000).jobs:
        store.request_cancel(queued.id)
    job = url_job(store, owner=owner)
    claimed = store.claim_work(worker_id, lease_seconds=60)
    assert claimed is not None and claimed.id == job.id
    return claimed


def completed_job(
    store: JobStore, *, segments: list[dict[str, Any]] | None = None, owner: str = ""
) -> JobRecord:
    """A job of ``owner`` finished the way a worker finishes one: claimed, then completed (no model
    needed)."""
    job = processing_job(store, owner=owner)
    segments = SEGMENTS if segments is None else segments
    result = JobResult(
        text=" ".join(segment["text"].strip() for segment in segments),
        language="en",
        language_probability=0.97,
        duration=7.2,
        segments=segments,
        decoding=DECODING,
    )
    assert store.complete_job(job.id, "test-worker", result)
    return store.get_job(job.id)


def error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The body of an error response, after checking it has the one error shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    assert "Traceback" not in response.text
    return body


def health_when(api: Api, wanted: Callable[[httpx.Response], bool], *, timeout: float = 10) -> httpx.Response:
    """``GET /health`` once its answer is ``wanted``: its figures may be up to a second old."""
    deadline = time.monotonic() + timeout
    while not wanted(response := api.client.get("/health")):
        if time.monotonic() > deadline:
            raise AssertionError(f"/health did not change within {timeout:g} s: {response.text}")
        time.sleep(0.05)
    return response

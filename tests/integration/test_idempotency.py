"""Idempotent submits: one job per Idempotency-Key, enforced by the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

import httpx
import pytest
from api_helpers import AUDIO_DIR, PUBLIC_URL, Api, error_body, job_count, running_api
from dbtools import utcnow
from sqlalchemy import func, select, update

from cesar_common.db.idempotency import KEY_WINDOW, IdempotencyKeyReusedError
from cesar_common.db.records import JobRecord, JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import Job, JobAudio
from cesar_common.errors import InvalidInputError

T = TypeVar("T")
AUDIO = b"RIFF" + bytes(range(256)) * 4096  # 1 MiB and a bit: two chunks


def url_job(key: str | None, *, url: str = "https://93.184.215.14/a.mp3", model: str = "tiny.en") -> NewJob:
    return NewJob(
        source=JobSource.URL,
        options=TranscribeOptions(model=model),
        source_url=url,
        idempotency_key=key,
        callback_url="https://93.184.215.14/hook",
    )


def upload_job(key: str | None, *, filename: str = "talk.wav") -> NewJob:
    return NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en"),
        filename=filename,
        content_type="audio/wav",
        idempotency_key=key,
    )


def counts(store: JobStore) -> tuple[int, int, int]:
    """(visible jobs, pending jobs, audio chunks)."""
    with store.engine.connect() as conn:
        visible = conn.execute(select(func.count()).where(Job.status != "pending")).scalar_one()
        pending = conn.execute(select(func.count()).where(Job.status == "pending")).scalar_one()
        chunks = conn.execute(select(func.count()).select_from(JobAudio)).scalar_one()
    return visible, pending, chunks


def at_once(count: int, action: Callable[[], T]) -> list[T]:
    """Run ``action`` on ``count`` threads released together."""
    barrier = threading.Barrier(count)

    def run() -> T:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(run) for _ in range(count)]
        return [future.result(timeout=60) for future in futures]


def test_the_same_key_and_request_return_the_first_job(store: JobStore) -> None:
    first, created = store.create_job_idempotent(url_job("key-1"), None)
    again, created_again = store.create_job_idempotent(url_job("key-1"), None)
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert again.callback_url == "https://93.184.215.14/hook"
    other, created_other = store.create_job_idempotent(url_job("key-2"), None)
    assert created_other and other.id != first.id
    assert store.create_job(url_job(None), None).id not in (first.id, other.id)  # no key: always new


def test_the_same_key_with_another_request_is_refused(store: JobStore) -> None:
    first = store.create_job(url_job("key-1"), None)
    for different in (url_job("key-1", url="https://93.184.215.14/b.mp3"), url_job("key-1", model="base")):
        with pytest.raises(IdempotencyKeyReusedError) as refused:
            store.create_job(different, None)
        assert refused.value.status_code == 422
        assert refused.value.extra["job_id"] == first.id
    assert counts(store)[0] == 1


def test_uploads_compare_the_bytes_and_leave_nothing_behind(store: JobStore) -> None:
    first, created = store.create_job_idempotent(upload_job("up"), io.BytesIO(AUDIO))
    assert created and first.status is JobStatus.QUEUED
    again, created_again = store.create_job_idempotent(upload_job("up"), io.BytesIO(AUDIO))
    assert not created_again and again.id == first.id
    with pytest.raises(IdempotencyKeyReusedError):
        store.create_job(upload_job("up"), io.BytesIO(AUDIO + b"x"))
    with pytest.raises(IdempotencyKeyReusedError):
        store.create_job(upload_job("up", filename="other.wav"), io.BytesIO(AUDIO))
    assert counts(store) == (1, 0, 2)
    assert b"".join(store.iter_audio(first.id)) == AUDIO


def test_a_key_older_than_a_day_names_a_new_job(store: JobStore) -> None:
    old = store.create_job(url_job("daily"), None)
    with store.engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == old.id)
            .values(created_at=utcnow() - KEY_WINDOW - timedelta(minutes=1))
        )
    fresh, created = store.create_job_idempotent(url_job("daily", model="base"), None)
    assert created and fresh.id != old.id
    assert store.get_job(old.id).status is JobStatus.QUEUED  # the old job stays, only its key is freed
    assert store.create_job(url_job("daily", model="base"), None).id == fresh.id


def test_keys_must_be_short_printable_ascii(store: JobStore) -> None:
    for bad in ("", "k" * 256, "caf\u00e9", "tab\there"):
        with pytest.raises(InvalidInputError):
            store.create_job(url_job(bad), None)
    assert store.create_job(url_job("k" * 255), None).status is JobStatus.QUEUED


@pytest.mark.parametrize("kind", ["url", "upload"])
def test_ten_concurrent_creates_with_one_key_make_one_job(store: JobStore, kind: str) -> None:
    def submit() -> tuple[JobRecord, bool]:
        if kind == "url":
            return store.create_job_idempotent(url_job("race"), None)
        return store.create_job_idempotent(upload_job("race"), io.BytesIO(AUDIO))

    results = at_once(10, submit)
    assert sum(created for _job, created in results) == 1
    assert len({job.id for job, _created in results}) == 1
    visible, pending, chunks = counts(store)
    assert (visible, pending) == (1, 0)
    assert chunks == (2 if kind == "upload" else 0)  # the losers' uploads are gone


# --- over HTTP --------------------------------------------------------------------------------------------
@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with running_api(db_url, models=["base.en"]) as running:
        yield running


def post_url(api: Api, key: str | None, path: str = "/transcribe", **body: str) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return api.client.post(path, json={"url": PUBLIC_URL, **body}, headers=headers)


def test_a_repeated_url_submit_gets_200_and_the_same_job(api: Api) -> None:
    first = post_url(api, "retry-me")
    assert first.status_code == 202, first.text
    again = post_url(api, "retry-me", path="/transcribe/url")  # the first API's path: the same request
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    body = error_body(post_url(api, "retry-me", model="base.en"), 422)
    assert body["code"] == "idempotency_key_reused"
    assert post_url(api, None).status_code == 202  # no key: a new job each time
    assert job_count(api.store) == 2


def test_a_repeated_upload_gets_200_and_a_different_file_422(api: Api) -> None:
    def send(name: str) -> httpx.Response:
        return upload_with_key(api, name, "upload-key")

    first = send("speech_en.wav")
    assert first.status_code == 202, first.text
    again = send("speech_en.wav")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert error_body(send("speech_en.flac"), 422)["code"] == "idempotency_key_reused"
    assert job_count(api.store) == 1


def upload_with_key(api: Api, name: str, key: str) -> httpx.Response:
    with (AUDIO_DIR / name).open("rb") as audio:
        return api.client.post(
            "/transcribe", files={"file": (name, audio, "audio/wav")}, headers={"Idempotency-Key": key}
        )


def test_an_overlong_key_is_refused_before_the_upload_is_read(api: Api) -> None:
    error_body(post_url(api, "k" * 256), 400)
    error_body(upload_with_key(api, "speech_en.wav", "k" * 256), 400)
    assert post_url(api, "k" * 255).status_code == 202
    assert job_count(api.store) == 1


@pytest.mark.parametrize("kind", ["url", "upload"])
def test_ten_concurrent_http_submits_with_one_key_make_one_job(api: Api, kind: str) -> None:
    def submit() -> httpx.Response:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            if kind == "url":
                return client.post("/transcribe", json={"url": PUBLIC_URL}, headers={"Idempotency-Key": "k"})
            with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
                files = {"file": ("speech_en.wav", audio, "audio/wav")}
                return client.post("/transcribe", files=files, headers={"Idempotency-Key": "k"})

    responses = at_once(10, submit)
    assert sorted(r.status_code for r in responses) == [200] * 9 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert job_count(api.store) == 1
    assert counts(api.store)[1] == 0  # no upload left half-stored

"""Audio in an S3-compatible object store (a real SeaweedFS, tests/seaweed.py) with the job database on SQLite
and PostgreSQL: every row naming audio is written after its object, every read is checked against the
sha256 the row holds, an object no row names is swept after the grace period and never before, and audio
moves between the two stores while it is being read."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator

import pytest
from seaweed import Seaweed
from sqlalchemy import func, select

from cesar_common.blob_store import BlobStore, StoredObject
from cesar_common.db.records import JobSource, JobStatus, NewJob, PartPlan, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import job_audio, job_part_audio, jobs
from cesar_common.errors import ObjectStoreError, PayloadTooLargeError, StoredAudioError

MIB = 1024 * 1024


@pytest.fixture
def blobs(seaweed: Seaweed, s3_bucket: str) -> Iterator[BlobStore]:
    store = _seaweed_store(seaweed, s3_bucket)
    yield store
    store.close()


def _seaweed_store(
    seaweed: Seaweed,
    bucket: str,
    *,
    url: str | None = None,
    endpoint_url: str | None = None,
    secret: str | None = None,
    timeout: float = 5,
) -> BlobStore:
    """A BlobStore of ``seaweed``'s bucket (or another ``url``, address, secret)."""
    return BlobStore(
        url or f"s3://{bucket}/cesar",
        endpoint_url=endpoint_url or seaweed.endpoint,
        region=seaweed.region,
        access_key_id=seaweed.access_key,
        secret_access_key=secret or seaweed.secret_key,
        timeout_seconds=timeout,
    )


def _away(seaweed: Seaweed, bucket: str) -> BlobStore:
    """The same bucket at an address where nothing listens (the discard port): the store is down."""
    return _seaweed_store(seaweed, bucket, endpoint_url="http://127.0.0.1:9", timeout=1)


@pytest.fixture
def s3_store(db_url: str, blobs: BlobStore) -> Iterator[JobStore]:
    store = JobStore.from_url(db_url, blobs=blobs)
    yield store
    store.close()


def _upload(name: str = "a.wav") -> NewJob:
    return NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename=name)


def _keys(blobs: BlobStore) -> set[str]:
    listed = blobs._client.list_objects_v2(Bucket=blobs.bucket, Prefix=blobs.prefix)
    return {item["Key"] for item in listed.get("Contents", ())}


def _row_bytes(store: JobStore) -> int:
    """Bytes of audio the database itself holds."""
    with store.engine.connect() as conn:
        held = conn.execute(select(func.coalesce(func.sum(func.length(job_audio.c.data)), 0))).scalar_one()
        parts = conn.execute(
            select(func.coalesce(func.sum(func.length(job_part_audio.c.data)), 0))
        ).scalar_one()
    return int(held) + int(parts)


def test_an_upload_goes_to_one_object_and_comes_back_checked(s3_store: JobStore, blobs: BlobStore) -> None:
    data = os.urandom(20 * MIB + 12345)  # three parts of a multipart upload
    job = s3_store.create_job(_upload(), io.BytesIO(data))
    assert job.status is JobStatus.QUEUED and job.size_bytes == len(data)
    assert _row_bytes(s3_store) == 0  # the database holds the key, not the bytes
    (key,) = _keys(blobs)
    assert key.startswith(f"cesar/uploads/{job.id}/")
    assert b"".join(s3_store.iter_audio(job.id)) == data
    assert s3_store.audio_size(job.id) == len(data)


def test_a_changed_or_missing_object_fails_the_read_clearly(s3_store: JobStore, blobs: BlobStore) -> None:
    job = s3_store.create_job(_upload(), io.BytesIO(b"x" * 5000))
    (key,) = _keys(blobs)
    blobs._client.put_object(Bucket=blobs.bucket, Key=key, Body=b"y" * 5000)
    with pytest.raises(StoredAudioError, match="sha256 differs"):
        b"".join(s3_store.iter_audio(job.id))
    blobs._client.delete_object(Bucket=blobs.bucket, Key=key)
    with pytest.raises(StoredAudioError, match="is missing"):
        b"".join(s3_store.iter_audio(job.id))


def test_an_upload_over_the_limit_leaves_nothing_queued(s3_store: JobStore, blobs: BlobStore) -> None:
    with pytest.raises(PayloadTooLargeError):
        s3_store.create_job(_upload(), io.BytesIO(b"z" * (9 * MIB)), max_bytes=8 * MIB)
    with s3_store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    assert _keys(blobs) == set()  # the multipart upload was aborted: no object came


def test_the_store_down_at_submit_refuses_and_queues_nothing(db_url: str, s3_bucket: str, seaweed) -> None:  # type: ignore[no-untyped-def]
    away = _away(seaweed, s3_bucket)
    store = JobStore.from_url(db_url, blobs=away)
    try:
        with pytest.raises(ObjectStoreError, match="cannot be reached") as caught:
            store.create_job(_upload(), io.BytesIO(b"a" * 1000))
        assert caught.value.status_code == 503
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    finally:
        store.close()
        away.close()


def test_wrong_credentials_are_named_at_the_check(s3_bucket: str, seaweed) -> None:  # type: ignore[no-untyped-def]
    wrong = _seaweed_store(seaweed, s3_bucket, secret="not-the-secret")
    with pytest.raises(ObjectStoreError, match="refused Cesar's credentials"):
        wrong.check(write=True)
    missing = _seaweed_store(seaweed, s3_bucket, url="s3://no-such-bucket-here")
    with pytest.raises(ObjectStoreError, match="does not exist"):
        missing.check()


def test_the_sweep_deletes_only_what_no_row_names_after_the_grace(
    s3_store: JobStore, blobs: BlobStore
) -> None:
    kept = s3_store.create_job(_upload("kept.wav"), io.BytesIO(b"k" * 1000))
    gone = s3_store.create_job(_upload("gone.wav"), io.BytesIO(b"g" * 1000))
    orphan = blobs.put(blobs.new_key("uploads", "0000-crashed-between-object-and-row"), b"o" * 10)
    foreign = f"{blobs.prefix}notes/keep-me.txt"  # not Cesar's: never touched
    blobs._client.put_object(Bucket=blobs.bucket, Key=foreign, Body=b"mine")
    s3_store.request_cancel(gone.id)  # a final job's audio row goes with its end
    assert s3_store.sweep_objects(grace_seconds=3600) == 0  # all younger than the grace
    assert s3_store.sweep_objects(grace_seconds=0) == 2  # the cancelled job's and the orphan
    left = _keys(blobs)
    assert orphan.key not in left and foreign in left
    assert b"".join(s3_store.iter_audio(kept.id)) == b"k" * 1000


def test_parts_and_live_pieces_are_objects_too(s3_store: JobStore, blobs: BlobStore) -> None:
    job = s3_store.create_job(_upload(), io.BytesIO(b"w" * 4000))
    claimed = s3_store.claim_work("w1", lease_seconds=30)
    assert claimed is not None and claimed.id == job.id
    pcm = [os.urandom(3 * MIB), os.urandom(1000)]
    for seq, audio in enumerate(pcm):
        s3_store.store_part_audio(job.id, "w1", seq, audio, lease_seconds=30)
    assert s3_store.split_job(
        job.id, "w1", [PartPlan(0.0, 60.0), PartPlan(60.0, 61.0)], language="en", language_probability=1.0
    )
    assert _row_bytes(s3_store) == 0
    for seq, audio in enumerate(pcm):
        assert b"".join(s3_store.iter_part_audio(f"{job.id}:{seq}")) == audio
    assert sum(key.startswith(f"cesar/parts/{job.id}/") for key in _keys(blobs)) == 2


def test_audio_moves_both_ways_while_it_is_read(s3_store: JobStore, db_url: str, blobs: BlobStore) -> None:
    data = os.urandom(6 * MIB + 7)
    plain = JobStore.from_url(db_url)  # no object store: the audio goes into the database
    try:
        job = plain.create_job(_upload(), io.BytesIO(data))
    finally:
        plain.close()
    assert s3_store.audio_to_move(to_objects=True) == [job.id]
    reader = s3_store.iter_audio(job.id)
    first = next(reader)  # a worker part-way through the database's rows
    assert s3_store.move_audio(job.id, to_objects=True) == len(data)
    assert first + b"".join(reader) == data  # went on from the same byte, in the object
    assert _row_bytes(s3_store) == 0 and s3_store.audio_to_move(to_objects=True) == []
    assert s3_store.move_audio(job.id, to_objects=True) is None  # moved already: nothing to do
    with io.BytesIO() as scratch:
        assert s3_store.move_audio(job.id, to_objects=False, scratch=scratch) == len(data)
    assert _row_bytes(s3_store) == len(data)
    assert hashlib.sha256(b"".join(s3_store.iter_audio(job.id))).digest() == hashlib.sha256(data).digest()
    assert s3_store.sweep_objects(grace_seconds=0) == 1  # the object the move left behind


def test_a_ranged_read_starts_at_its_byte(blobs: BlobStore) -> None:
    # what a read that broke off, or found its audio moved, goes on with
    data = os.urandom(3 * MIB)
    stored = blobs.write(blobs.new_key("uploads", "resume"), [data])
    assert stored == StoredObject(stored.key, len(data), hashlib.sha256(data).hexdigest())
    assert b"".join(blobs.read(stored, offset=MIB + 5)) == data[MIB + 5 :]


def test_health_and_uploads_say_when_the_object_store_is_away(
    db_url: str, s3_bucket: str, seaweed, blobs: BlobStore, audio_dir
) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import TestClient

    from cesar_api.app import create_app
    from cesar_common.settings import Settings

    settings = Settings(database_url=db_url)
    up = JobStore.from_url(db_url, blobs=blobs)
    with TestClient(create_app(settings, up)) as client:
        objects = client.get("/health").json()["objects"]
        assert objects["reachable"] is True and objects["url"] == blobs.url
    up.close()
    away = _away(seaweed, s3_bucket)
    down = JobStore.from_url(db_url, blobs=away)
    with TestClient(create_app(settings, down)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert "cannot be reached" in health.json()["objects"]["error"]
        speech = (audio_dir / "speech_en.flac").read_bytes()
        refused = client.post("/transcribe", files={"file": ("speech_en.flac", speech, "audio/flac")})
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "object_store_unavailable"
        assert client.get("/jobs").json() == []  # nothing queued
    down.close()
    away.close()


def test_a_worker_hands_its_job_back_while_the_store_is_away(
    db_url: str, s3_bucket: str, seaweed, blobs: BlobStore
) -> None:  # type: ignore[no-untyped-def]
    import threading

    from fake_worker import FakeEngine

    from cesar_common.settings import Settings
    from cesar_worker.worker import Worker

    up = JobStore.from_url(db_url, blobs=blobs)
    job = up.create_job(_upload(), io.BytesIO(b"a" * 3000))
    away = _away(seaweed, s3_bucket)
    down = JobStore.from_url(db_url, blobs=away)
    stop = threading.Event()
    worker = Worker(Settings(database_url=db_url), down, FakeEngine(), worker_id="w-away", stop_event=stop)
    try:
        claimed = down.claim_work("w-away", lease_seconds=30)
        assert claimed is not None
        outcome = worker.process(claimed)
        assert outcome.status == "handed back" and "object store unavailable" in outcome.detail
        again = up.get_job(job.id)
        assert again.status is JobStatus.QUEUED and again.attempts == 0  # not counted, not failed
        done = Worker(Settings(database_url=db_url), up, FakeEngine(), worker_id="w-up", stop_event=stop)
        assert done.process(up.claim_work("w-up", lease_seconds=30)).status == "completed"  # type: ignore[arg-type]
    finally:
        for store in (up, down):
            store.close()
        away.close()


def test_one_worker_of_the_fleet_sweeps_per_interval(store: JobStore) -> None:
    assert store.take_chore("object_sweep", every_seconds=600) is True  # the first to ask
    assert store.take_chore("object_sweep", every_seconds=600) is False  # the others, until it is due
    assert store.take_chore("another", every_seconds=600) is True
    assert store.take_chore("now", every_seconds=0) is True
    assert store.take_chore("now", every_seconds=0) is True  # due again at once

"""API keys and quotas in the store, on SQLite and PostgreSQL: keys hashed and found by prefix, limits
checked in the transaction that queues a job, revocation and expiry by the database's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cesar_common.db import api_keys
from cesar_common.db.records import JobSource, JobStatus, KeyRecord, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.errors import ConflictError, InvalidInputError, LimitExceededError

PUBLIC_URL = "https://example.com/a.mp3"


def _job(store: JobStore, key: KeyRecord | None, seconds: float | None = None) -> str:
    new = NewJob(
        source=JobSource.URL,
        options=TranscribeOptions(model="tiny.en"),
        source_url=PUBLIC_URL,
        owner="" if key is None else key.id,
        limits=key,
        audio_seconds=seconds,
    )
    return store.create_job(new, None).id


def test_a_key_is_shown_once_and_stored_as_a_hash(store: JobStore) -> None:
    record, key = store.create_key("Alice", max_queued=3)
    assert key.startswith(f"cesar_{record.prefix}_") and api_keys.key_prefix(key) == record.prefix
    assert key not in repr(store.list_keys()) and record.key_hash == api_keys.hash_key(key)
    assert api_keys.matches(key, record) and not api_keys.matches(key + "x", record)
    assert record.active and not record.admin and record.max_queued == 3
    assert store.get_key("alice").id == record.id == store.get_key(record.prefix).id
    with pytest.raises(ConflictError):
        store.create_key("ALICE")
    with pytest.raises(InvalidInputError):
        store.create_key("bob", max_queued=0)


def test_revoked_and_expired_keys_are_inactive(store: JobStore) -> None:
    alice, _ = store.create_key("alice")
    store.create_key("bob", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    revoked, _cancelled = store.revoke_key("alice", cancel_jobs=False)
    assert revoked.revoked_at is not None and not revoked.active
    assert not store.get_key("bob").active
    renewed = store.update_key("bob", {"expires_at": datetime.now(UTC) + timedelta(days=1)})
    assert renewed.active and alice.id != renewed.id


def test_quotas_count_unfinished_jobs_and_audio_of_the_day(store: JobStore) -> None:
    alice, _ = store.create_key("alice", max_queued=2, audio_hours_per_day=1.0)
    first = _job(store, alice, 1800)
    _job(store, alice, 1200)
    with pytest.raises(LimitExceededError) as refused:
        _job(store, alice, 10)
    assert refused.value.extra == {"limit": "max_queued", "value": 2}
    store.request_cancel(first)  # finished: out of the queue, still in the day's audio
    assert store.key_usage(alice.id).queued == 1
    with pytest.raises(LimitExceededError) as refused:
        _job(store, alice, 601)
    assert refused.value.extra["limit"] == "audio_hours_per_day"
    assert refused.value.retry_after_seconds is not None and 0 < refused.value.retry_after_seconds <= 86400
    _job(store, alice, 600)  # exactly the hour
    assert store.key_usage(alice.id).audio_seconds_today == pytest.approx(3600)
    _job(store, None, 99999)  # the server's own key has no limits


def test_revoking_can_cancel_the_keys_queued_jobs(store: JobStore) -> None:
    alice, _ = store.create_key("alice")
    bob, _ = store.create_key("bob")
    mine = [_job(store, alice) for _ in range(3)]
    theirs = _job(store, bob)
    _record, cancelled = store.revoke_key("alice", cancel_jobs=True)
    assert cancelled == 3
    assert {store.get_job(job_id).status for job_id in mine} == {JobStatus.CANCELLED}
    assert store.get_job(theirs).status is JobStatus.QUEUED

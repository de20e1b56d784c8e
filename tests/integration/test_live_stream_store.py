"""A live session that follows a stream URL, at the job store, on SQLite and PostgreSQL: its own maximum
length, the idle time started again when a worker begins following it, and its gaps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from cesar_common.db.idempotency import IdempotencyKeyReusedError
from cesar_common.db.records import AudioFormat, JobRecord, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import live_sessions

OPTIONS = TranscribeOptions(model="tiny.en", language="en")
URL = "https://radio.example/live.m3u8"


def stream_session(store: JobStore, *, max_seconds: float | None = None, key: str | None = None) -> JobRecord:
    new = NewJob(source=JobSource.LIVE, options=OPTIONS, source_url=URL, idempotency_key=key)
    job, _ = store.open_live_session(new, AudioFormat.CONTAINER, None, max_seconds=max_seconds)
    return job


def age_audio(store: JobStore, job_id: str, seconds: float) -> None:
    """As if ``seconds`` went by on the database's clock since the session's audio last arrived."""
    where = live_sessions.c.job_id == job_id
    with store.engine.begin() as conn:
        at = conn.execute(select(live_sessions.c.audio_at).where(where)).scalar_one()
        conn.execute(update(live_sessions).where(where).values(audio_at=at - timedelta(seconds=seconds)))


def test_a_stream_session_keeps_its_url_and_its_own_maximum_length(store: JobStore) -> None:
    job = stream_session(store, max_seconds=90.5)
    assert (job.source, job.source_url) == (JobSource.LIVE, URL)
    state = store.live_state(job.id)
    assert state is not None
    assert (state.audio_format, state.max_seconds, state.gaps) == (AudioFormat.CONTAINER, 90.5, ())
    plain = stream_session(store)
    assert store.live_state(plain.id).max_seconds is None  # type: ignore[union-attr]


def test_the_maximum_length_is_part_of_what_an_idempotency_key_names(store: JobStore) -> None:
    first = stream_session(store, max_seconds=60, key="radio-1")
    assert stream_session(store, max_seconds=60, key="radio-1").id == first.id
    with pytest.raises(IdempotencyKeyReusedError):
        stream_session(store, max_seconds=120, key="radio-1")


def test_following_starts_the_idle_time_again_and_says_how_long_nobody_followed(store: JobStore) -> None:
    job = stream_session(store)
    age_audio(store, job.id, 600)  # queued ten minutes, or its worker lost that long ago
    assert store.restart_live_idle(job.id) >= 600
    state = store.live_state(job.id)
    assert state is not None and state.idle_seconds < 600


def test_gaps_are_written_whole_and_read_back_in_order(store: JobStore) -> None:
    job = stream_session(store)
    first = {"at": 12.5, "seconds": 0.0, "reason": "connection closed"}
    store.set_live_gaps(job.id, [first])
    grown = {**first, "seconds": 2.25}
    second = {"at": 40.0, "seconds": 5.0, "reason": "HTTP 503 from radio.example"}
    store.set_live_gaps(job.id, [grown, second])
    state = store.live_state(job.id)
    assert state is not None and state.gaps == (grown, second)

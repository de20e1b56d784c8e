"""A 5-minute recording cut into parts and transcribed by several real workers with real Whisper (issue 20):
on SQLite by worker threads whose transcripts of each part are recorded, on PostgreSQL by worker processes
one of which is killed (-9) in the middle of a part; and a cancel that stops every part."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from long_audio import make_long_story
from sqlalchemy import select
from webhook_support import webhook_receiver
from wer import normalise, word_error_rate
from worker_support import WorkerProcess, wait_final, wait_for, worker_processes

from cesar_common.db.records import JobRecord, JobResult, JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import JobPart
from cesar_common.settings import Settings
from cesar_worker.transcriber import WhisperTranscriber
from cesar_worker.worker import run_worker

COPIES = 4  # the story four times: 4.7 minutes (bench/split.py measures the 9.5-minute file)
SPLIT_SECONDS = 75  # in 4 parts
#: tiny.en on this synthetic story, whole or in parts (0.11 measured either way: BENCHMARKS.md)
MAX_WER = 0.2
PARTS = JobPart.__table__


@pytest.fixture(scope="module")
def long_story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("long") / "long_story.wav"
    return path, make_long_story(path, copies=COPIES)


def submit(store: JobStore, path: Path, *, callback: str | None = None) -> JobRecord:
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en", word_timestamps=True),
        filename=path.name,
        callback_url=callback,
    )
    with path.open("rb") as audio:
        return store.create_job(new, audio)


def check_transcript(job: JobRecord, reference: str) -> list[dict[str, Any]]:
    """Completed, 4 parts, times never going back, about the reference's words: returns the segments."""
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert job.decoding is not None and job.decoding.parts == 4
    segments = job.segments or []
    assert [segment["id"] for segment in segments] == list(range(len(segments)))
    for before, after in itertools.pairwise(segments):
        assert before["start"] <= after["start"] and before["end"] <= after["end"] + 0.5
    words = [word for segment in segments for word in segment["words"]]
    assert all(word["start"] <= word["end"] for word in words)
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))
    assert word_error_rate(reference, job.result_text or "") <= MAX_WER
    # nothing heard twice or lost at a cut: as many words as the story has, within a few
    assert abs(len(normalise(job.result_text or "").split()) - len(reference.split())) <= 0.03 * len(
        reference.split()
    )
    return segments


class RecordingTranscriber(WhisperTranscriber):
    """The real transcriber, keeping what it returned for each part (in the part's own time)."""

    results: dict[int, JobResult]

    def transcribe(self, job: JobRecord, audio_path: Path, **kwargs: Any) -> JobResult:
        result = super().transcribe(job, audio_path, **kwargs)
        with lock:
            RecordingTranscriber.results[len(RecordingTranscriber.results)] = result
        return result


lock = threading.Lock()


@pytest.fixture
def worker_threads(sqlite_url: str) -> Iterator[Callable[[int], None]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(count: int) -> None:
        settings = Settings(
            database_url=sqlite_url, split_seconds=SPLIT_SECONDS, offline=True, allow_private_urls=True
        )
        for n in range(count):
            thread = threading.Thread(
                target=run_worker,
                args=(settings,),
                kwargs={
                    "worker_id": f"thread-{n}",
                    "stop_event": stop,
                    "transcriber_factory": RecordingTranscriber,
                },
                daemon=True,
            )
            thread.start()
            threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(60)


def test_the_merged_transcript_is_what_the_parts_said(
    sqlite_url: str, long_story: tuple[Path, str], worker_threads: Callable[[int], None]
) -> None:
    path, reference = long_story
    RecordingTranscriber.results = {}
    store = JobStore.from_url(sqlite_url)
    try:
        with webhook_receiver() as receiver:
            job = submit(store, path, callback=receiver.url)
            worker_threads(2)
            done = wait_final(store, job.id, timeout=600)
            segments = check_transcript(done, reference)
            assert done.decoding is not None and done.decoding.workers == 2
            assert done.duration == pytest.approx((path.stat().st_size - 44) / 32000, abs=0.01)
            assert len(receiver.wait_for(1)) == 1
            assert_delivered_once(store, job.id)
    finally:
        store.close()
    assert len(RecordingTranscriber.results) == 4
    merged = [word for segment in segments for word in segment["words"]]
    said = [
        [word for segment in result.segments for word in segment["words"]]
        for result in RecordingTranscriber.results.values()
    ]
    # the merged words are the parts' words, block after block, each part's shifted to where it was cut
    position, cuts = 0, []
    while said:
        block = next(
            (words for words in said if _same_words(merged[position : position + len(words)], words)), None
        )
        assert block is not None, f"no part says what the transcript says from word {position} on"
        said.remove(block)
        cuts.append(round(merged[position]["start"] - block[0]["start"], 3))
        position += len(block)
    assert position == len(merged) and cuts[0] == 0.0 and cuts == sorted(cuts)
    # and at each cut, silence: the words before it end before it, the words after start after it
    starts = [word["start"] for word in merged]
    for cut in cuts[1:]:
        before = [word for word in merged if word["start"] < cut]
        assert all(word["end"] <= cut + 0.02 for word in before)
    assert starts == sorted(starts)


def _same_words(merged: list[dict[str, Any]], part: list[dict[str, Any]]) -> bool:
    """The same words, in the same order, at the same times but for one shift."""
    if len(merged) != len(part) or not part:
        return False
    shift = merged[0]["start"] - part[0]["start"]
    return all(
        a["word"] == b["word"]
        and abs(a["start"] - b["start"] - shift) < 0.002
        and abs(a["end"] - b["end"] - shift) < 0.002
        for a, b in zip(merged, part, strict=True)
    )


def test_a_worker_killed_mid_part_costs_that_part_alone(
    postgres_url: str, long_story: tuple[Path, str], tmp_path: Path
) -> None:
    path, reference = long_story
    store = JobStore.from_url(postgres_url)
    env = {"CESAR_SPLIT_SECONDS": str(SPLIT_SECONDS), "CESAR_ALLOW_PRIVATE_URLS": "true"}
    try:
        with webhook_receiver() as receiver, worker_processes(tmp_path) as start:
            workers: list[WorkerProcess] = [start(postgres_url, env=env) for _ in range(2)]
            for worker in workers:
                worker.wait_ready()
            job = submit(store, path, callback=receiver.url)

            def part_mid_way() -> tuple[WorkerProcess, str] | None:
                with store.engine.connect() as conn:
                    rows = conn.execute(
                        select(PARTS.c.id, PARTS.c.worker_id).where(
                            PARTS.c.job_id == job.id, PARTS.c.status == "processing", PARTS.c.progress > 0
                        )
                    ).all()
                for part_id, worker_id in rows:
                    for worker in workers:
                        if worker_id.endswith(f":{worker.pid}"):
                            return worker, part_id
                return None

            victim, part_id = wait_for_value(part_mid_way, timeout=300)
            victim.kill()
            seen: list[int] = []

            def retried() -> bool:
                with store.engine.connect() as conn:
                    attempts = conn.execute(
                        select(PARTS.c.attempts).where(PARTS.c.id == part_id)
                    ).scalar_one_or_none()
                seen.append(attempts or 0)
                return attempts == 2 or store.get_job(job.id).is_final

            wait_for_value(retried, timeout=300)
            done = wait_final(store, job.id, timeout=600)
            check_transcript(done, reference)
            assert 2 in seen  # the lost part was tried again, once
            assert len(receiver.wait_for(1)) == 1
            assert_delivered_once(store, job.id)
            survivor = next(worker for worker in workers if worker is not victim)
            assert "queued again" in survivor.log() or f"part {part_id}" in survivor.log()
    finally:
        store.close()


def test_cancel_mid_job_stops_every_part(
    sqlite_url: str, long_story: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = long_story
    store = JobStore.from_url(sqlite_url)
    env = {"CESAR_SPLIT_SECONDS": str(SPLIT_SECONDS)}
    try:
        with worker_processes(tmp_path) as start:
            workers = [start(sqlite_url, env=env) for _ in range(2)]
            job = submit(store, path)

            def both_parts_running() -> bool:
                with store.engine.connect() as conn:
                    running = conn.execute(
                        select(PARTS.c.id).where(PARTS.c.job_id == job.id, PARTS.c.status == "processing")
                    ).all()
                return len(running) == 2

            wait_for_value(both_parts_running, timeout=300)
            assert store.request_cancel(job.id).status is JobStatus.CANCELLED
            for worker in workers:
                wait_for_value(lambda worker=worker: "cancelled" in worker.log(), timeout=60)
            with store.engine.connect() as conn:
                assert conn.execute(select(PARTS.c.id).where(PARTS.c.job_id == job.id)).all() == []
            wait_for(store, job.id, lambda record: record.status is JobStatus.CANCELLED, timeout=5)
            assert len(store.list_workers(alive_within_seconds=60)) == 2
    finally:
        store.close()


def assert_delivered_once(store: JobStore, job_id: str) -> None:
    """One delivery of the job's webhook, and it arrived (its worker may still be writing so)."""
    wait_for_value(
        lambda: [d.state.value for d in store.list_deliveries(job_id)] == ["delivered"], timeout=30
    )


def wait_for_value(condition: Callable[[], Any], *, timeout: float) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

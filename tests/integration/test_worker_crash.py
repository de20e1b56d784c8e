"""`kill -9` of a worker mid-job: a new worker finishes the job once its lease runs out (attempts == 2)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_support import (
    ForkedWorker,
    WorkerProcess,
    fork_server,
    submit_bytes,
    submit_file,
    wait_final,
    wait_for,
    worker_processes,
)

from cesar_common.db.records import JobRecord, JobStatus
from cesar_common.db.store import JobStore

StartWorker = Callable[..., WorkerProcess]
SHORT_LEASE = {"CESAR_LEASE_SECONDS": "1"}


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    with worker_processes(tmp_path) as start:
        yield start


@pytest.fixture
def job_store(db_url: str) -> Iterator[JobStore]:
    store = JobStore.from_url(db_url)
    yield store
    store.close()


def held_by(process: WorkerProcess | ForkedWorker) -> Callable[[JobRecord], bool]:
    suffix = f":{process.pid}"  # worker ids default to host:pid
    return lambda job: job.status is JobStatus.PROCESSING and (job.worker_id or "").endswith(suffix)


def test_kill_9_mid_transcription(
    db_url: str, job_store: JobStore, start_worker: StartWorker, audio_dir: Path
) -> None:
    doomed = start_worker(db_url, "--preload", env={"CESAR_LEASE_SECONDS": "2"})
    doomed.wait_ready()
    job = submit_file(job_store, audio_dir / "speech_en.wav")
    wait_for(job_store, job.id, held_by(doomed), what="the claim")
    doomed.kill()
    assert job_store.get_job(job.id).status is JobStatus.PROCESSING  # nobody said anything

    rescuer = start_worker(db_url, "--preload", env={"CESAR_LEASE_SECONDS": "2"})
    done = wait_final(job_store, job.id)
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2), done
    assert done.worker_id is not None and done.worker_id.endswith(f":{rescuer.pid}")
    assert "lazy" in (done.result_text or "").lower()
    assert "lost; queued again" in rescuer.log()


def test_kill_9_ten_times_loses_nothing_and_runs_nothing_twice(
    db_url: str, job_store: JobStore, tmp_path: Path
) -> None:
    """Each round: a job, a new worker that claims it, `kill -9` at a random moment of the job.

    Later rounds' workers (and a last one) sweep the dead workers' expired leases and finish their jobs.
    The fake engine is slow on a first attempt and quick on a retry; workers are forked from a process
    that already did the imports, so ten crashes take seconds.
    """
    record = tmp_path / "record.txt"
    chance = random.Random(4)
    env = {"CESAR_DATABASE_URL": db_url, "CESAR_POLL_MAX_SECONDS": "0.5", **SHORT_LEASE}
    jobs = []
    with fork_server(tmp_path, env) as fork:
        for _ in range(10):
            job = submit_bytes(job_store, b"audio", prompt="slow-first:30")
            jobs.append(job.id)
            worker = fork("--record", str(record))
            wait_for(job_store, job.id, held_by(worker), what="the claim")
            time.sleep(chance.uniform(0, 0.2))
            worker.kill()

        fork("--record", str(record))
        final = [wait_final(job_store, job_id, timeout=60) for job_id in jobs]

    assert [(job.status, job.attempts) for job in final] == [(JobStatus.COMPLETED, 2)] * 10
    events = [line.split() for line in record.read_text().splitlines()]
    starts = Counter((job_id, attempt) for event, _pid, job_id, attempt in events if event == "start")
    finishes = Counter((job_id, attempt) for event, _pid, job_id, attempt in events if event == "done")
    # a kill may land before the engine started (claim, audio copy): attempt 1 ran at most once
    assert all(starts[(job_id, "1")] <= 1 for job_id in jobs), starts
    assert {key for key in starts if key[1] != "1"} == {(job_id, "2") for job_id in jobs}
    assert all(starts[(job_id, "2")] == 1 for job_id in jobs), starts
    assert finishes == Counter({(job_id, "2"): 1 for job_id in jobs})  # each job finished once

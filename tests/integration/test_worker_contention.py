"""Three worker processes, 300 jobs: each job runs exactly once; each worker takes jobs oldest first."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_support import fork_server, submit_bytes

from cesar_common.db.records import JobStatus
from cesar_common.db.store import JobStore

JOBS = 300
WORKERS = 3


@pytest.fixture
def job_store(db_url: str) -> Iterator[JobStore]:
    store = JobStore.from_url(db_url)
    yield store
    store.close()


def test_three_workers_share_300_jobs_exactly_once(db_url: str, job_store: JobStore, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    env = {"CESAR_DATABASE_URL": db_url, "CESAR_POLL_MAX_SECONDS": "0.5"}
    with fork_server(tmp_path, env) as fork:
        workers = [fork("--record", str(record)) for _ in range(WORKERS)]
        for worker in workers:
            worker.wait_ready()
        # the workers claim while the jobs are still being created
        order = {submit_bytes(job_store, b"audio").id: n for n in range(JOBS)}

        deadline = time.monotonic() + 120
        while (counts := job_store.queue_counts()).queued or counts.processing:
            assert time.monotonic() < deadline, counts
            time.sleep(0.05)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait_gone()
            assert "stopped after" in worker.log()  # a clean exit, not a crash

    jobs = [job_store.get_job(job_id) for job_id in order]
    assert {(job.status, job.attempts) for job in jobs} == {(JobStatus.COMPLETED, 1)}
    starts = [line.split() for line in record.read_text().splitlines() if line.startswith("start")]
    assert Counter(job_id for _e, _pid, job_id, _a in starts) == Counter(order.keys())  # exactly once each
    by_worker: dict[str, list[int]] = defaultdict(list)
    for _event, pid, job_id, _attempt in starts:
        by_worker[pid].append(order[job_id])
    for taken in by_worker.values():
        assert taken == sorted(taken)  # oldest first, per worker
    assert len(by_worker) >= 2, {pid: len(taken) for pid, taken in by_worker.items()}

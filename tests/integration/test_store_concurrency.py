"""Several worker processes claiming from one database at once: no job twice, none lost, never locked out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from cesar_common.db.records import JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

PROCESSES = 3
#: jobs to share (each process holds one of them before any goes on)
JOBS = 120

# Each process: announce itself, wait for the starting gun, then claim, report and complete until the
# queue is empty, having waited after its first claim until every process holds one (so the claims
# overlap). It prints the ids it claimed.
WORKER_SCRIPT = """
import json, os, sys, time
from cesar_common.db.records import JobResult
from cesar_common.db.store import JobStore

url, worker_id, rendezvous, processes = sys.argv[1:5]
store = JobStore.from_url(url)
store.ping()
open(os.path.join(rendezvous, worker_id), "w").close()
while not os.path.exists(os.path.join(rendezvous, "go")):
    time.sleep(0.002)
claimed = []
while (job := store.claim_work(worker_id, lease_seconds=60)) is not None:
    if not claimed:  # every process holds a job at once before any goes on (however loaded the machine)
        open(os.path.join(rendezvous, "holds-" + worker_id), "w").close()
        deadline = time.monotonic() + 60
        while sum(name.startswith("holds-") for name in os.listdir(rendezvous)) < int(processes):
            if time.monotonic() > deadline:
                sys.exit("the other processes claimed nothing within 60 s")
            time.sleep(0.002)
    claimed.append(job.id)
    store.report_progress(job.id, worker_id, 0.5)
    result = JobResult(text=worker_id, language="en", language_probability=1.0, duration=1.0)
    if not store.complete_job(job.id, worker_id, result):
        sys.exit(f"lost job {job.id}")
print(json.dumps(claimed))
"""


def test_concurrent_claims_never_share_a_job(db_url: str, store: JobStore, tmp_path: Path) -> None:
    options = TranscribeOptions(model="tiny.en")
    created = {
        store.create_job(
            NewJob(source=JobSource.URL, options=options, source_url=f"https://x.org/{i}"), None
        ).id
        for i in range(JOBS)
    }
    processes = {
        f"w{i}": subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, db_url, f"w{i}", str(tmp_path), str(PROCESSES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    }
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / name).exists() for name in processes):
            assert all(p.poll() is None for p in processes.values()), "a worker died before the start"
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        (tmp_path / "go").touch()  # all connected: release them together
        claims: dict[str, list[str]] = {}
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=120)
            assert "database is locked" not in stderr
            assert process.returncode == 0, stderr
            claims[name] = json.loads(stdout)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    everything = [job_id for ids in claims.values() for job_id in ids]
    assert len(everything) == len(set(everything)), "a job was claimed twice"
    assert set(everything) == created
    assert all(claims.values()), "a process claimed nothing"
    claimer = {job_id: name for name, ids in claims.items() for job_id in ids}
    finished = store.list_jobs(status=JobStatus.COMPLETED, limit=JOBS + 1).jobs
    assert len(finished) == JOBS
    for job in finished:
        # the result was written by the process that claimed the job, after exactly one claim
        assert (job.result_text, job.worker_id, job.attempts) == (claimer[job.id], claimer[job.id], 1)
    assert store.queue_counts().queued == 0

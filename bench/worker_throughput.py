"""What the job queue costs over transcribing in a plain loop, and how fast an idle worker picks a job up.

For each backend (a fresh SQLite file; a fresh PostgreSQL database when the server answers):

1. starts one real worker (``python -m cesar_worker``, which preloads its model) and waits until it is
   ready and idle;
2. measures its CPU use while idle;
3. pickup latency: submits one small job at a time to the idle worker (after a random pause, so the worker
   has backed off) and reads ``started_at - created_at`` from the database;
4. throughput, side by side: a plain loop in this process transcribing ``speech_en.wav`` ``--jobs`` times
   with one loaded model, and ``--jobs`` jobs of the same file through the database and the worker (first
   job created to last job completed), in the order plain, worker, worker, plain (``--rounds`` pairs), so
   a drift in the machine's load weighs on both sides alike. The ratio is total plain time over total
   worker time. CPU seconds are printed too (this process for the loop, the worker process for the jobs):
   on a machine shared with other work they show the queue's overhead when wall times wander.

Targets: worker/plain throughput >= 0.95; median pickup latency <= 100 ms on SQLite and <= 50 ms on
PostgreSQL.

    .venv/bin/python bench/worker_throughput.py [--jobs 20] [--rounds 1] [--samples 15]
        [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from cesar.schema import upgrade_database
from cesar_common.db.connect import normalize_url
from cesar_common.db.records import JobRecord, JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.settings import get_settings
from cesar_common.transcription import loading, whisper

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
SPEECH = AUDIO / "speech_en.wav"
SMALL = AUDIO / "silence.wav"  # VAD finds nothing: the job is all pickup and bookkeeping
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
THROUGHPUT_TARGET = 0.95
LATENCY_TARGET_MS = {"sqlite": 100.0, "postgres": 50.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="pairs of plain/worker/worker/plain")
    parser.add_argument("--samples", type=int, default=15, help="pickup latency samples per backend")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CESAR_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    )
    args = parser.parse_args()

    settings = get_settings()
    model = loading.load_model(
        settings.model,
        device=settings.device,
        compute_type=settings.compute_type,
        threads=settings.threads,
        offline=settings.offline,
    )
    print(
        f"model {settings.model} on {model.device} ({model.compute_type}), {os.cpu_count()} CPUs, "
        f"{args.jobs} x {SPEECH.name}, {args.rounds} round(s) of plain, worker, worker, plain"
    )
    options = whisper.DecodeOptions(batch_size=settings.batch_size)
    plain_loop(model, options, 1)  # warm-up

    failures = 0
    for backend in args.backends.split(","):
        with database(backend.strip(), args.postgres_url) as url:
            if url is None:
                print(f"\n[{backend}] skipped: server unreachable")
                continue
            failures += bench_backend(backend, url, model, options, args)
    return 1 if failures else 0


def bench_backend(
    backend: str,
    url: str,
    model: loading.LoadedModel,
    options: whisper.DecodeOptions,
    args: argparse.Namespace,
) -> int:
    print(f"\n[{backend}]")
    store = JobStore.from_url(url)
    with worker_process(url) as worker:
        idle = idle_cpu_percent(worker.pid, seconds=3.0)
        print(f"  idle worker CPU: {idle:.2f} % of one core over 3 s")

        latencies = pickup_latencies(store, args.samples)
        median_ms = statistics.median(latencies)
        print(
            f"  pickup latency (created -> started, idle worker, {len(latencies)} jobs): "
            f"median {median_ms:.1f} ms, min {min(latencies):.1f}, max {max(latencies):.1f}"
        )

        plain_wall = plain_cpu = worker_wall = worker_cpu = 0.0
        runs = [side for _ in range(args.rounds) for side in ("plain", "worker", "worker", "plain")]
        for side in runs:
            if side == "plain":
                wall, cpu = plain_loop(model, options, args.jobs)
                plain_wall, plain_cpu = plain_wall + wall, plain_cpu + cpu
            else:
                before = cpu_seconds(worker.pid)
                wall = worker_batch(store, args.jobs)
                cpu = cpu_seconds(worker.pid) - before
                worker_wall, worker_cpu = worker_wall + wall, worker_cpu + cpu
            print(
                f"  {side:6} {args.jobs} files: {wall:6.2f} s wall ({args.jobs / wall:.2f}/s), "
                f"{cpu:6.2f} s CPU"
            )
    store.close()

    ratio = plain_wall / worker_wall
    latency_ok = median_ms <= LATENCY_TARGET_MS[backend]
    print(
        f"  => throughput ratio worker/plain {ratio:.3f} (target >= {THROUGHPUT_TARGET}) "
        f"{'OK' if ratio >= THROUGHPUT_TARGET else 'MISSED'}; CPU ratio {plain_cpu / worker_cpu:.3f}; "
        f"median pickup {median_ms:.1f} ms (target <= {LATENCY_TARGET_MS[backend]:.0f} ms) "
        f"{'OK' if latency_ok else 'MISSED'}"
    )
    return int(ratio < THROUGHPUT_TARGET) + int(not latency_ok)


def plain_loop(model: loading.LoadedModel, options: whisper.DecodeOptions, count: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``count`` transcriptions in this process."""
    cpu_before = cpu_seconds(os.getpid())
    started = time.perf_counter()
    for _ in range(count):
        result = whisper.transcribe(model, SPEECH, options)
        result.segments_as_dicts()
    return time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu_before


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def worker_batch(store: JobStore, count: int) -> float:
    jobs = [submit(store, SPEECH) for _ in range(count)]
    done = [wait_final(store, job.id, poll=0.2) for job in jobs]
    bad = [job for job in done if job.status is not JobStatus.COMPLETED]
    if bad:
        raise SystemExit(f"a benchmark job failed: {bad[0]}")
    first_created = min(job.created_at for job in done)
    last_completed = max(job.completed_at for job in done if job.completed_at)
    return (last_completed - first_created).total_seconds()


def pickup_latencies(store: JobStore, samples: int) -> list[float]:
    chance = random.Random(7)
    latencies = []
    for _ in range(samples):
        time.sleep(chance.uniform(0.3, 1.5))  # idle long enough to back off
        job = wait_final(store, submit(store, SMALL).id)
        assert job.started_at is not None
        latencies.append((job.started_at - job.created_at).total_seconds() * 1000)
    return latencies


def submit(store: JobStore, path: Path) -> JobRecord:
    new = NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename=path.name)
    with path.open("rb") as audio:
        return store.create_job(new, audio)


def wait_final(store: JobStore, job_id: str, timeout: float = 300.0, poll: float = 0.02) -> JobRecord:
    deadline = time.monotonic() + timeout
    while not (job := store.get_job(job_id)).is_final:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not finish within {timeout:.0f} s")
        time.sleep(poll)  # timings come from the database, not from this loop
    return job


def idle_cpu_percent(pid: int, *, seconds: float) -> float:
    process = psutil.Process(pid)
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / seconds


@contextlib.contextmanager
def worker_process(url: str) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as log:
        env = {**os.environ, "CESAR_DATABASE_URL": url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cesar_worker"],
            env={**env, "CESAR_LOG_LEVEL": "warning"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(url, proc)
            yield proc
        finally:
            proc.terminate()
            if proc.wait(60) != 0:
                log.seek(0)
                print(log.read().decode(errors="replace"), file=sys.stderr)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Ready once its presence row shows the preloaded model."""
    store = JobStore.from_url(url)
    deadline = time.monotonic() + 120
    try:
        while not any(row.models for row in store.list_workers(alive_within_seconds=60)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start")
            time.sleep(0.1)
    finally:
        store.close()
    time.sleep(1.5)  # let it settle into its idle wait


@contextlib.contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str | None]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade_database(url)
            yield url
        return
    admin = normalize_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"cesar_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        yield None
        return
    url = normalize_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    sys.exit(main())

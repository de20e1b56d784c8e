"""How far one database carries a fleet (issue 21): many simulated workers on the real worker loop and store.

Workers are threads of the real :class:`cesar_worker.worker.Worker` (claims, leases, heartbeats, progress
and segment writes, presence, sweeps, webhooks loop) with an engine that sleeps a drawn duration instead of
decoding, reporting a segment every ``--segment-seconds``. They run in ``--processes`` processes; each
process has one engine (as a real worker process does) and one ``LISTEN`` connection shared by its
threads (a real worker process has its own: a simulation artifact that keeps the connection count under
the server's limit; the report gives the real per-process bound). Jobs are submitted through the store as
the API does (small uploads), arriving at ``--load`` of what the fleet can do (0.9: queued -> claimed then
measures the claim itself), or all at once (``--load 0``: the fleet at saturation).

Measured: claims per second, claim latency (``started_at - created_at``, database time) p50/p99, the
database's transactions per second and rows written per second, connections in use (peak), the database
server's CPU; after the run: jobs lost, jobs completed twice, leases lost by live workers. ``--kill 0.1``
kills (SIGKILL) that share of the worker processes halfway through; their jobs come back after the lease.

    .venv/bin/python bench/fleet_sim.py [--workers 200] [--jobs 2000] [--processes 10] [--kill 0.1]
        [--backend postgres|sqlite] [--lease-seconds 60]

The last line: ``fleet: N workers, X claims/s, claim p99 Y ms, lost L, duplicated D``.

``--storage database,s3`` (issue 33) compares where audio is kept instead, side by side in one run: for each
store in turn, a fresh database (vacuumed, checkpointed), then ``--jobs`` uploads of ``--audio-seconds`` of
real speech each (the 70 s story fixture, 16 kHz mono 16-bit WAV) through ``JobStore.create_job``, all
queued, then drained by ``--workers`` threads on the workers' path (claim, the audio read whole as a worker
fetches it, complete with a transcript of the audio's length: a segment every 4 s; ``--no-read``: the claim
path alone). The S3 store is a SeaweedFS (``weed mini``, tests/seaweed.py) on loopback. Measured for each:
WAL bytes per audio hour (the server's ``pg_wal_lsn_diff`` around the uploads and the drain, and the records
of the bench's database alone as ``pg_waldump`` reads them, with their full-page images and tables:
bench/wal_meter.py), the database's growth per audio hour (queued, and after the drain), claims/s, CPU; then
S3 / database. ``--rounds``: the whole again, the order turned each time (medians). PostgreSQL only.

    .venv/bin/python bench/fleet_sim.py --storage database,s3 [--jobs 200] [--audio-seconds 60]
        [--workers 4] [--rounds 1] [--no-transcript] [--no-read]

The last line: ``storage: WAL per audio hour A MB (database) vs B MB (s3), R %; ...; claims/s C vs D``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN = os.environ.get(
    "CESAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SIM_DATABASE = f"cesar_fleet_sim_{os.getpid()}"  # dropped at the end


# --- a worker process of the simulation ------------------------------------------------------------------
class SleepingEngine:
    """Takes the seconds the job's prompt names (``sleep:S``), a segment every ``segment_seconds``."""

    def __init__(self, segment_seconds: float) -> None:
        self.segment_seconds = segment_seconds

    def preload(self, model: str) -> None:
        pass

    def loaded_models(self) -> list[str]:
        return ["sim"]

    def close(self) -> None:
        pass

    def plan_parts(self, job: Any, audio_path: Path, **_: Any) -> None:
        return None  # never cut: jobs here are short

    def transcribe(
        self,
        job: Any,
        audio_path: Path,
        *,
        on_progress: Callable[[float, float], None],
        on_segment: Callable[[dict[str, Any]], None],
        should_stop: Callable[[], bool],
    ) -> Any:
        from cesar_common.db.records import JobResult
        from cesar_worker.jobrun import JobStopped, StopReason

        seconds = float((job.options.initial_prompt or "sleep:1").partition(":")[2])
        started, segments = time.monotonic(), []
        while (elapsed := time.monotonic() - started) < seconds:
            if should_stop():
                raise JobStopped(StopReason.CANCELLED)
            n = len(segments)
            segment = {"id": n, "start": elapsed, "end": elapsed + self.segment_seconds, "text": f"part {n}"}
            segments.append(segment)
            on_segment(segment)
            on_progress(elapsed, seconds)
            time.sleep(min(self.segment_seconds, max(0.0, seconds - elapsed)))
        return JobResult(
            text="sim", language="en", language_probability=1.0, duration=seconds, segments=segments
        )


def run_child(
    url: str, index: int, workers: int, pool: int, lease_seconds: float, segment_seconds: float
) -> int:
    from sqlalchemy import event

    from cesar_common.db.connect import open_engine
    from cesar_common.db.feed import ChangeFeed
    from cesar_common.db.store import JobStore
    from cesar_common.logs import configure_logging
    from cesar_common.settings import Settings
    from cesar_worker.worker import Worker

    configure_logging("info", name=f"sim-{index}")
    settings = Settings(database_url=url, lease_seconds=lease_seconds, model="tiny.en")
    # the process's threads share a bounded pool: --pool per process keeps the fleet under the server's
    # max_connections (a real worker process holds at most CESAR_DB_POOL_SIZE + CESAR_DB_MAX_OVERFLOW + 1)
    engine = open_engine(url, pool_size=pool, max_overflow=0)
    store = JobStore(engine)
    statements: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements[" ".join(statement.split())[:70]] += 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    feed = ChangeFeed(engine)  # one LISTEN for every worker thread of the process
    fleet = [
        Worker(
            settings,
            store,
            SleepingEngine(segment_seconds),
            worker_id=f"sim-{index}-{n}",
            stop_event=stop,
            feed=feed,
        )
        for n in range(workers)
    ]
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in fleet]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    feed.close()
    engine.dispose()
    print("STATEMENTS " + json.dumps(dict(statements)), flush=True)
    return 0


# --- the coordinator ---------------------------------------------------------------------------------------
def fresh_database(backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'fleet.db'}"
    import psycopg

    admin = POSTGRES_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SIM_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SIM_DATABASE}")
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{SIM_DATABASE}"


def drop_database(backend: str) -> None:
    if backend != "postgres":
        return
    import psycopg

    admin = POSTGRES_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SIM_DATABASE} WITH (FORCE)")


class Sampler:
    """Once a second: the database's transactions and rows written, its connections, its CPU."""

    def __init__(self, url: str, backend: str) -> None:
        self.url, self.backend = url, backend
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _postgres_cpu(self) -> float:
        total = 0.0
        for process in psutil.process_iter(["name", "cpu_times"]):
            if (
                process.info["name"]
                and process.info["name"].startswith("postgres")
                and process.info["cpu_times"]
            ):
                total += process.info["cpu_times"].user + process.info["cpu_times"].system
        return total

    def _run(self) -> None:
        if self.backend != "postgres":
            return
        import psycopg

        plain = self.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            while not self._stop.wait(1.0):
                xacts, written = conn.execute(
                    "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted "
                    "FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()  # type: ignore[misc]
                connections = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchone()[0]  # type: ignore[index]
                self.samples.append(
                    {
                        "t": time.monotonic(),
                        "xacts": xacts,
                        "written": written,
                        "connections": connections,
                        "cpu": self._postgres_cpu(),
                    }
                )

    def rates(self, start: float, end: float) -> dict[str, float]:
        window = [s for s in self.samples if start <= s["t"] <= end]
        if len(window) < 2:
            return {}
        first, last = window[0], window[-1]
        seconds = last["t"] - first["t"]
        return {
            "xacts_per_s": (last["xacts"] - first["xacts"]) / seconds,
            "rows_written_per_s": (last["written"] - first["written"]) / seconds,
            "db_cpu_share": (last["cpu"] - first["cpu"]) / seconds,
            "peak_connections": max(s["connections"] for s in self.samples),
        }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, help="simulated workers (200); drain threads with --storage (4)"
    )
    parser.add_argument("--jobs", type=int, help="jobs (2000; 200 with --storage)")
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--kill", type=float, default=0.0, help="share of worker processes killed midway")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest simulated job")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="longest simulated job")
    parser.add_argument(
        "--load",
        type=float,
        default=0.9,
        help="arrival rate as a share of what the fleet can do (0: queue every job at once, saturation)",
    )
    parser.add_argument("--segment-seconds", type=float, default=1.0, help="a segment every this often")
    parser.add_argument("--lease-seconds", type=float, default=60.0)
    parser.add_argument("--pool", type=int, default=6, help="database connections per simulation process")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--storage",
        help="compare audio stores instead (issue 33): database,s3 (side by side, in this order)",
    )
    parser.add_argument("--audio-seconds", type=float, default=60.0, help="audio per upload (--storage)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="side-by-side runs, the order turned each time (--storage)"
    )
    parser.add_argument(
        "--no-transcript", action="store_true", help="complete with an empty transcript (--storage)"
    )
    parser.add_argument(
        "--no-read", action="store_true", help="drain without reading the audio: the claim path (--storage)"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storage:
        stores = [name.strip() for name in args.storage.split(",")]
        if not stores or set(stores) - {"database", "s3"} or args.backend != "postgres":
            parser.error("--storage takes database and/or s3, comma-separated, on --backend postgres")
        return storage_main(args, stores)
    args.workers = 200 if args.workers is None else args.workers
    args.jobs = 2000 if args.jobs is None else args.jobs
    if args.child is not None:
        return run_child(
            args.url, args.child, args.workers, args.pool, args.lease_seconds, args.segment_seconds
        )

    from cesar.schema import upgrade_database
    from cesar_common.db.records import JobSource, JobStatus, NewJob, TranscribeOptions
    from cesar_common.db.store import JobStore

    random.seed(21)
    tmp = Path(tempfile.mkdtemp(prefix="cesar-fleet-"))
    url = fresh_database(args.backend, tmp)
    upgrade_database(url)
    store = JobStore.from_url(url)
    processes = min(args.processes, args.workers)
    per_process = [
        args.workers // processes + (1 if n < args.workers % processes else 0) for n in range(processes)
    ]
    print(
        f"{args.backend}: {args.workers} workers in {processes} processes, {args.jobs} jobs of "
        f"{args.min_seconds:g}-{args.max_seconds:g} s, {os.cpu_count()} CPUs shared with the database"
        + (f", killing {args.kill:.0%} of the processes midway" if args.kill else ""),
        flush=True,
    )
    mean = (args.min_seconds + args.max_seconds) / 2
    rate = args.workers / mean * args.load if args.load > 0 else 0.0  # jobs/s; 0: all at once

    def submit(number: int) -> None:
        seconds = random.uniform(args.min_seconds, args.max_seconds)
        options = TranscribeOptions(model="tiny.en", initial_prompt=f"sleep:{seconds:.2f}")
        store.create_job(NewJob(JobSource.UPLOAD, options, filename=f"sim{number}.wav"), b"RIFF-sim")

    def submit_all() -> None:
        begun = time.monotonic()
        for number in range(args.jobs):
            if rate:  # open-loop arrivals: queued -> claimed then measures the claim, not a backlog
                time.sleep(max(0.0, begun + number / rate - time.monotonic()))
            submit(number)

    if not rate:
        submit_all()
    print(
        f"jobs: {'all queued at once' if not rate else f'{rate:.1f}/s ({args.load:.0%} of the fleet)'}",
        flush=True,
    )
    sampler = Sampler(url, args.backend)
    sampler.start()
    children = []
    for index, count in enumerate(per_process):
        log = (tmp / f"sim-{index}.log").open("wb")
        command = [sys.executable, __file__, "--child", str(index), "--url", url, "--workers", str(count),
                   "--lease-seconds", str(args.lease_seconds), "--pool", str(args.pool),
                   "--segment-seconds", str(args.segment_seconds)]  # fmt: skip
        children.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
    started = time.monotonic()
    submitter = threading.Thread(target=submit_all, daemon=True) if rate else None
    if submitter is not None:
        submitter.start()
    killed: set[int] = set()
    kill_count = round(args.kill * processes)
    while True:
        done = store_count_final(store)
        if kill_count and not killed and done >= args.jobs // 2:
            for child in random.sample(children, kill_count):
                child.send_signal(signal.SIGKILL)
                killed.add(child.pid)
            print(f"killed {kill_count} of {processes} worker processes after {done} jobs", flush=True)
        if done >= args.jobs:
            break
        if time.monotonic() - started > args.timeout:
            print(f"timed out with {done} of {args.jobs} jobs final", flush=True)
            break
        time.sleep(1.0)
    ended = time.monotonic()
    for child in children:
        if child.pid not in killed:
            child.send_signal(signal.SIGTERM)
    for child in children:
        child.wait(60)
    sampler.stop()

    jobs = _all_jobs(store)
    completed = [job for job in jobs if job.status is JobStatus.COMPLETED]
    lost = args.jobs - len(completed)
    latencies = [
        (job.started_at - job.created_at).total_seconds() * 1000 for job in completed if job.attempts == 1
    ]
    claims = sum(job.attempts for job in jobs)
    logs = "".join((tmp / f"sim-{index}.log").read_text(errors="replace") for index in range(processes))
    finished_twice = _completed_twice(logs)
    by_kind: Counter[str] = Counter()
    for line in logs.splitlines():
        if line.startswith("STATEMENTS "):
            by_kind.update(json.loads(line.removeprefix("STATEMENTS ")))
    lease_lost = logs.count("was no longer ours") + logs.count("lease lost")
    seconds = ended - started
    rates = sampler.rates(started + 5, ended - 1)
    figures = {
        "backend": args.backend,
        "workers": args.workers,
        "processes": processes,
        "jobs": args.jobs,
        "killed_processes": len(killed),
        "seconds": round(seconds, 1),
        "claims_per_s": round(claims / seconds, 1),
        "claim_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "claim_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "requeued_attempts": claims - len(jobs),
        "lost": lost,
        "duplicated": finished_twice,
        "leases_lost_by_live_workers": lease_lost,
        **{key: round(value, 2) for key, value in rates.items()},
    }
    print("statements per second, by kind (the workers' engines):")
    for kind, count in by_kind.most_common(12):
        print(f"  {count / seconds:8.1f}  {kind}")
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    p99 = figures["claim_p99_ms"]
    print(
        f"fleet: {args.workers} workers, {figures['claims_per_s']} claims/s, claim p99 {p99} ms, "
        f"lost {lost}, duplicated {finished_twice}"
    )
    store.close()
    drop_database(args.backend)
    return 0 if lost == 0 and finished_twice == 0 else 1


# --- --storage: where audio is kept (issue 33) -----------------------------------------------------------
STORY = (
    "chapter one the river ran quietly past the old mill where the miller kept his records of every sack of "
    "grain each morning he counted the sacks twice because his father had taught him that numbers forgive "
    "nobody chapter two in the spring the water rose and the wheel turned faster than anyone could remember "
    "the village gathered on the bridge to watch chapter three by summer the mill"
)
TRANSCRIPT_WORDS = STORY.split()
_BUCKETS = itertools.count()
WHO = ("postgres", "seaweed", "bench")
SEGMENT_SECONDS = 4.0  # a transcript's segment every this often, 10 words each (150 words a minute)


def story_pcm() -> bytes:
    """The 70 s story fixture as 16 kHz mono 16-bit PCM: real speech, as compressible as speech is."""
    import numpy as np

    from cesar_common.transcription.audio import decode_samples

    samples = decode_samples(ROOT / "tests" / "fixtures" / "audio" / "speech_en_long.flac")
    return bytes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def upload_bytes(speech: bytes, number: int, seconds: float) -> bytes:
    """A WAV file of ``seconds`` of the story, from a different place for each upload."""
    from cesar_common.transcription.audio import wav_header

    size = int(seconds * 16000) * 2
    start = (number * 7 * 16000 * 2) % len(speech)
    looped = speech * (size // len(speech) + 2)
    return wav_header(size) + looped[start : start + size]


def transcript(number: int, seconds: float) -> Any:
    """A transcript of ``seconds`` of speech: a segment of 10 words (drawn from the story) every 4 s."""
    from cesar_common.db.records import JobResult

    draw = random.Random(number)
    segments: list[dict[str, Any]] = []
    for n in range(int(seconds // SEGMENT_SECONDS)):
        words = " ".join(draw.choice(TRANSCRIPT_WORDS) for _ in range(10))
        start = n * SEGMENT_SECONDS
        segments.append({"id": n, "start": start, "end": start + SEGMENT_SECONDS, "text": words})
    text = " ".join(segment["text"] for segment in segments)
    return JobResult(text=text, language="en", language_probability=1.0, duration=seconds, segments=segments)


class _Sink:
    """Where a drained job's audio goes (a worker writes it into a temporary file; here only counted)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)


def drain(
    store: Any, threads: int, jobs: int, seconds: float, *, with_transcript: bool, with_read: bool
) -> dict[str, Any]:
    """Claim, read (``with_read``) and complete every queued job from ``threads`` threads; the figures of
    the drain."""
    from cesar_common.db.records import JobResult

    claim_ms: list[float] = []
    read_ms: list[float] = []
    complete_ms: list[float] = []
    completed: list[str] = []
    read = [0]
    failures: list[str] = []

    def run(index: int) -> None:
        worker_id = f"drain-{index}"
        try:
            while True:
                begun = time.perf_counter()
                job = store.claim_work(worker_id, lease_seconds=600)
                claim_ms.append((time.perf_counter() - begun) * 1000)
                if job is None:
                    return
                if with_read:
                    sink = _Sink()
                    begun = time.perf_counter()
                    store.copy_audio_to(job.id, sink)
                    read_ms.append((time.perf_counter() - begun) * 1000)
                    read[0] += sink.written
                number = int((job.filename or "sim0.wav")[3:].split(".")[0])
                result = (
                    transcript(number, seconds)
                    if with_transcript
                    else JobResult(text="", language="en", language_probability=1.0, duration=seconds)
                )
                begun = time.perf_counter()
                if store.complete_job(job.id, worker_id, result):
                    completed.append(job.id)
                complete_ms.append((time.perf_counter() - begun) * 1000)
        except Exception as exc:  # reported, and the side fails
            failures.append(f"{worker_id}: {exc!r}")

    started = time.monotonic()
    pool = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    hits = claim_ms[: len(claim_ms) - threads]  # each thread's last claim found nothing
    return {
        "drain_s": round(elapsed, 2),
        "completed": len(completed),
        "lost": jobs - len(completed),
        "failures": failures[:5],
        "read_mb": round(read[0] / 1e6, 1),
        "claims_per_s": round(len(completed) / elapsed, 2),
        "claim_p50_ms": round(statistics.median(hits), 2) if hits else None,
        "claim_p99_ms": round(percentile(hits, 0.99), 2) if hits else None,
        "read_p50_ms": round(statistics.median(read_ms), 2) if read_ms else None,
        "complete_p50_ms": round(statistics.median(complete_ms), 2) if complete_ms else None,
    }


def storage_side(storage: str, args: argparse.Namespace, jobs: int, threads: int, speech: bytes,
                 seaweed: Any, tmp: Path) -> dict[str, Any]:  # fmt: skip
    """One store: a fresh database, the uploads, the drain; its figures."""
    from wal_meter import WalMeter

    from cesar.schema import upgrade_database
    from cesar_common.blob_store import BlobStore
    from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
    from cesar_common.db.store import JobStore

    url = fresh_database("postgres", tmp)
    upgrade_database(url)
    blobs = None
    if storage == "s3":
        bucket = seaweed.make_bucket(f"cesar-fleet-{os.getpid()}-{next(_BUCKETS)}")
        blobs = BlobStore(
            f"s3://{bucket}",
            endpoint_url=seaweed.endpoint,
            region=seaweed.region,
            access_key_id=seaweed.access_key,
            secret_access_key=seaweed.secret_key,
        )
    store = JobStore.from_url(url, blobs=blobs, pool_size=threads + 1, max_overflow=0)
    meter = WalMeter(url)
    hours = jobs * args.audio_seconds / 3600
    try:
        start = meter.begin()
        cpu = [_cpu_seconds(seaweed)]
        begun, uploaded = time.monotonic(), 0
        options = TranscribeOptions(model="tiny.en")
        for number in range(jobs):
            data = upload_bytes(speech, number, args.audio_seconds)
            uploaded += len(data)
            store.create_job(NewJob(JobSource.UPLOAD, options, filename=f"sim{number}.wav"), data)
        submit_s = time.monotonic() - begun
        queued = meter.mark("submit")
        cpu.append(_cpu_seconds(seaweed))
        figures = drain(
            store,
            threads,
            jobs,
            args.audio_seconds,
            with_transcript=not args.no_transcript,
            with_read=not args.no_read,
        )
        drained = meter.mark("drain")
        cpu.append(_cpu_seconds(seaweed))
        phases = meter.phases()
    finally:
        meter.close()
        store.close()
        if blobs is not None:
            blobs.close()
        drop_database("postgres")

    def per_hour(value: int | None) -> float | None:
        return None if value is None else round(value / hours / 1e6, 3)

    submit, drained_phase = phases
    total_db = (
        None
        if submit.database_bytes is None or drained_phase.database_bytes is None
        else submit.database_bytes + drained_phase.database_bytes
    )
    by_table: Counter[str] = Counter(submit.by_table)
    by_table.update(drained_phase.by_table)
    fpi = (submit.fpi_bytes or 0) + (drained_phase.fpi_bytes or 0)
    return {
        "storage": storage,
        "jobs": jobs,
        "audio_hours": round(hours, 3),
        "uploaded_mb": round(uploaded / 1e6, 1),
        "submit_s": round(submit_s, 2),
        "upload_mb_per_s": round(uploaded / 1e6 / submit_s, 1),
        **figures,
        **{
            f"cpu_s_{phase}_{who}": round(cpu[n + 1][who] - cpu[n][who], 2)
            for n, phase in enumerate(("submit", "drain"))
            for who in WHO
        },
        "wal_server_mb_per_audio_hour": per_hour(submit.server_bytes + drained_phase.server_bytes),
        "wal_server_submit_mb": round(submit.server_bytes / 1e6, 3),
        "wal_server_drain_mb": round(drained_phase.server_bytes / 1e6, 3),
        "wal_db_mb_per_audio_hour": per_hour(total_db),
        "wal_db_submit_mb": None if submit.database_bytes is None else round(submit.database_bytes / 1e6, 3),
        "wal_db_drain_mb": (
            None if drained_phase.database_bytes is None else round(drained_phase.database_bytes / 1e6, 3)
        ),
        "wal_db_fpi_share": round(fpi / total_db, 3) if total_db else None,
        "wal_db_records": (submit.records or 0) + (drained_phase.records or 0),
        "wal_db_by_table_mb": {table: round(value / 1e6, 3) for table, value in by_table.most_common(8)},
        "wal_db_unread_because": meter.why_no_waldump or None,
        "db_growth_queued_mb_per_audio_hour": per_hour(queued.database_bytes - start.database_bytes),
        "db_growth_drained_mb_per_audio_hour": per_hour(drained.database_bytes - start.database_bytes),
        "job_audio_queued_mb": round(queued.tables["job_audio"] / 1e6, 3),
        "jobs_table_queued_mb": round(queued.tables["jobs"] / 1e6, 3),
    }


def _cpu_seconds(seaweed: Any) -> dict[str, float]:
    """CPU seconds so far: the database server's processes, SeaweedFS's, this process's."""
    server = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if process.info["name"] and process.info["name"].startswith("postgres") and times:
            server += times.user + times.system
    weed = 0.0
    if seaweed is not None and seaweed.running:
        times = psutil.Process(seaweed._process.pid).cpu_times()
        weed = times.user + times.system + times.children_user + times.children_system
    own = psutil.Process().cpu_times()
    return {"postgres": server, "seaweed": weed, "bench": own.user + own.system}


def _median(values: list[Any]) -> float:
    if all(isinstance(value, int) for value in values):
        return statistics.median_low(values)
    return round(statistics.median(values), 3)


def storage_main(args: argparse.Namespace, stores: list[str]) -> int:
    jobs = 200 if args.jobs is None else args.jobs
    threads = 4 if args.workers is None else args.workers
    speech = story_pcm()
    hours = jobs * args.audio_seconds / 3600
    each = len(upload_bytes(speech, 0, args.audio_seconds))
    print(
        f"storage: {jobs} uploads of {args.audio_seconds:g} s (16 kHz mono 16-bit WAV, {each / 1e6:.2f} MB "
        f"each; {hours:.2f} audio hours, {jobs * each / 1e6:.0f} MB) per store, drained by {threads} "
        f"threads{' (no transcript)' if args.no_transcript else ''}"
        f"{' (the audio not read)' if args.no_read else ''}, {args.rounds} round(s), the order "
        f"turned each round; {os.cpu_count()} CPUs shared with the database and SeaweedFS",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="cesar-fleet-"))
    seaweed = None
    if "s3" in stores:
        sys.path.append(str(ROOT / "tests"))  # tests/seaweed.py: weed mini on loopback, as the tests run it
        from seaweed import Seaweed  # type: ignore[import-not-found]

        seaweed = Seaweed(tmp / "seaweed")
        seaweed.start()
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        for number in range(args.rounds):
            sides: dict[str, dict[str, Any]] = {}
            for storage in stores if number % 2 == 0 else stores[::-1]:
                sides[storage] = storage_side(storage, args, jobs, threads, speech, seaweed, tmp)
            rounds.append(sides)
            print(
                f"round {number + 1}: claims/s "
                + ", ".join(f"{name} {sides[name]['claims_per_s']}" for name in sides)
                + ", WAL per audio hour (MB) "
                + ", ".join(f"{name} {sides[name]['wal_db_mb_per_audio_hour']}" for name in sides),
                flush=True,
            )
    finally:
        if seaweed is not None:
            seaweed.stop(graceful=False)
        shutil.rmtree(tmp, ignore_errors=True)  # SeaweedFS's copy of the uploads: 0.3 to 1 GB a run
    # each figure: its median over the rounds (the WAL and sizes come out the same each round)
    sides = {
        name: {
            key: _median([r[name][key] for r in rounds])
            if isinstance(value, int | float) and not isinstance(value, bool)
            else value
            for key, value in rounds[0][name].items()
        }
        for name in stores
    }
    rows = (
        ("WAL per audio hour, this database (MB)", "wal_db_mb_per_audio_hour"),
        ("WAL per audio hour, whole server (MB)", "wal_server_mb_per_audio_hour"),
        ("  of which uploads / drain, this database (MB)", "wal_db_submit_mb", "wal_db_drain_mb"),
        ("  full-page images share", "wal_db_fpi_share"),
        ("database growth per audio hour, queued (MB)", "db_growth_queued_mb_per_audio_hour"),
        ("database growth per audio hour, drained (MB)", "db_growth_drained_mb_per_audio_hour"),
        ("uploads (MB/s)", "upload_mb_per_s"),
        (f"claims/s (claim, {'' if args.no_read else 'read, '}complete)", "claims_per_s"),
        ("claim p50 / p99 (ms)", "claim_p50_ms", "claim_p99_ms"),
        ("read / complete p50 (ms)", "read_p50_ms", "complete_p50_ms"),
        ("CPU s, uploads: PostgreSQL / SeaweedFS / bench", *(f"cpu_s_submit_{w}" for w in WHO)),
        ("CPU s, drain: PostgreSQL / SeaweedFS / bench", *(f"cpu_s_drain_{w}" for w in WHO)),
        ("lost", "lost"),
    )
    print(f"{'median of ' + str(len(rounds)) + ' round(s)':48}" + "".join(f" {name:>22}" for name in sides))
    for label, *keys in rows:
        cells = [" / ".join(str(side[key]) for key in keys) for side in sides.values()]
        print(f"{label:48}" + "".join(f" {cell:>22}" for cell in cells))
    for name, side in sides.items():
        print(f"{name}: this database's WAL by table (MB): {side['wal_db_by_table_mb']}")
    ratios: dict[str, float | None] = {}
    if "database" in sides and "s3" in sides:
        base, s3 = sides["database"], sides["s3"]

        def ratio(key: str) -> float | None:
            return None if not base[key] or s3[key] is None else round(s3[key] / base[key], 5)

        for key in ("wal_db_mb_per_audio_hour", "wal_server_mb_per_audio_hour",
                    "db_growth_queued_mb_per_audio_hour", "db_growth_drained_mb_per_audio_hour"):  # fmt: skip
            ratios[key] = ratio(key)
        per_round = [r["s3"]["claims_per_s"] / r["database"]["claims_per_s"] for r in rounds]
        ratios["claims_per_s"] = round(statistics.median(per_round), 3)
        print(
            "s3 / database: "
            + ", ".join(f"{key} {value}" for key, value in ratios.items())
            + " (claims/s: the median of the rounds' ratios, "
            + ", ".join(f"{value:.3f}" for value in per_round)
            + ")"
        )
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "median": sides, "ratios": ratios}, indent=2))
    if ratios:
        base, s3 = sides["database"], sides["s3"]
        measured = ratios["wal_db_mb_per_audio_hour"] is not None
        wal = "wal_db_mb_per_audio_hour" if measured else "wal_server_mb_per_audio_hour"
        share = ratios[wal]
        print(
            f"storage: WAL per audio hour {base[wal]} MB (database) vs {s3[wal]} MB (s3), "
            f"{share * 100 if share is not None else float('nan'):.2f} % (target at most 1 %); "
            f"database growth per audio hour {base['db_growth_queued_mb_per_audio_hour']} vs "
            f"{s3['db_growth_queued_mb_per_audio_hour']} MB; claims/s {base['claims_per_s']} vs "
            f"{s3['claims_per_s']} ({ratios['claims_per_s']})"
        )
    clean = all(side["lost"] == 0 and not side["failures"] for r in rounds for side in r.values())
    return 0 if clean else 1


def store_count_final(store: Any) -> int:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM jobs WHERE status IN ('completed', 'error', 'cancelled')")
            ).scalar_one()
        )


def _all_jobs(store: Any) -> list[Any]:
    jobs, cursor = [], None
    while True:
        page = store.list_jobs(limit=1000, cursor=cursor)
        jobs.extend(page.jobs)
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor


def _completed_twice(logs: str) -> int:
    """Jobs the worker logs report completed more than once (the store's fence should make this 0)."""
    seen: dict[str, int] = {}
    for line in logs.splitlines():
        marker = line.find(" completed ")
        if "job " in line and marker != -1:
            job_id = line.split("job ", 1)[1].split(" ", 1)[0]
            seen[job_id] = seen.get(job_id, 0) + 1
    return sum(1 for count in seen.values() if count > 1)


if __name__ == "__main__":
    raise SystemExit(main())

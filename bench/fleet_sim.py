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
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2000)
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
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
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

"""Load and memory figures of the HTTP API, against the targets of its issue.

With 10,000 jobs stored (98% completed with a transcript, the rest queued):

* start-up: time from launching `python -m cesar_api` (what `cesar serve` runs) and `cesar api` (the
  Procfile's `web`, which also checks the schema) to the first `200` from /health; CPU seconds and
  resident memory at that point. Target: under 1.5 s.
* `GET /jobs/{id}` requests per second at 32 connections, random ids (`wrk` when installed, else a Python
  asyncio load generator), side by side with ``bench/minimal_api.py`` (a bare Litestar app reading the same
  row with ``sqlite3`` and returning the same JSON), alternating runs. Target: Cesar at no less than 0.70
  of the minimal app's requests per second (SQLite).
* `GET /jobs?limit=100` latency, one request at a time. Target: median under 20 ms.
* peak growth of the API's resident memory while a 1 GiB WAV uploads (streamed: header + zeros,
  generated on the fly). Target: under 64 MiB.

With ``--health``, only the probes: `GET /health` (readiness) and `GET /health/live` (liveness) requests
per second at 32 connections, alternating rounds (`wrk`; the Python generator otherwise).

With ``--keys``, only `GET /jobs/{id}` with a user key of the database (its own jobs: the key ring and the
owner check on the path), side by side with the code before keys existed (the commit before migration 0012,
checked out in a git worktree, on a database of its own) answering its `CESAR_API_KEY`, alternating rounds.
Target: no less than 0.90 of the code before.

    .venv/bin/python bench/api_load.py [--jobs 10000] [--duration 10] [--db URL] [--skip-upload] [--health]
        [--keys]

The jobs are written with one bulk INSERT (the store writes one job per transaction, which would make
seeding the slowest part of the benchmark); the API reads them through the store like any others.
The load generator runs on the same machine and takes CPU from the API: figures are conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "user_key_vs_before": 0.90,
    "startup_s": 1.5,
    "get_job_vs_minimal": 0.70,
    "list_median_ms": 20.0,
    "upload_rss_growth_mib": 64.0,
}
SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 3.2, "text": " The quick brown fox jumps over the lazy dog."},
    {"id": 1, "start": 3.4, "end": 7.1, "text": " Transcription services should be fast and reliable."},
]
MIB = 1024 * 1024


# --- database ---------------------------------------------------------------------------------------
def seed(url: str, count: int) -> list[str]:
    """``count`` jobs, newest last; returns their ids."""
    from sqlalchemy import insert

    from cesar.schema import upgrade_database
    from cesar_common.db.connect import open_engine
    from cesar_common.db.tables import Job

    upgrade_database(url)
    start = datetime.now(UTC) - timedelta(days=1)
    rows: list[dict[str, Any]] = []
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for index, job_id in enumerate(ids):
        created = start + timedelta(seconds=index)
        completed = index < count * 0.98
        rows.append(
            {
                "id": job_id,
                "status": "completed" if completed else "queued",
                "source": "upload",
                "filename": f"interview-{index}.mp3",
                "content_type": "audio/mpeg",
                "size_bytes": 1_234_567,
                "model": "tiny.en",
                "language": None,
                "task": "transcribe",
                "word_timestamps": False,
                "vad": True,
                "created_at": created,
                "started_at": created + timedelta(seconds=1) if completed else None,
                "completed_at": created + timedelta(seconds=3) if completed else None,
                "progress": 1.0 if completed else 0.0,
                "attempts": 1 if completed else 0,
                "max_attempts": 3,
                "cancel_requested": False,
                "result_text": " ".join(s["text"].strip() for s in SEGMENTS) if completed else None,
                "detected_language": "en" if completed else None,
                "language_probability": 0.97 if completed else None,
                "duration": 7.2 if completed else None,
                "segments": SEGMENTS if completed else None,
            }
        )
    engine = open_engine(url)
    with engine.begin() as conn:
        for offset in range(0, len(rows), 1000):
            conn.execute(insert(Job.__table__), rows[offset : offset + 1000])
    engine.dispose()
    return ids


# --- the API process ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_env(url: str, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env.update(CESAR_DATABASE_URL=url, CESAR_PORT=str(port), CESAR_LOG_LEVEL="warning")
    return env


@contextmanager
def api_process(
    url: str, argv: list[str], extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, psutil.Process, dict[str, float]]]:
    """Start the API; yields its URL, its process and start-up figures (wall s, CPU s, RSS MiB)."""
    port = free_port()
    started = time.perf_counter()
    env = {**api_env(url, port), **(extra_env or {})}
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    proc = psutil.Process(process.pid)
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the API exited with {process.returncode}")
                try:
                    if client.get(f"{base}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.005)
        wall = time.perf_counter() - started
        cpu = proc.cpu_times()
        figures = {"wall_s": wall, "cpu_s": cpu.user + cpu.system, "rss_mib": proc.memory_info().rss / MIB}
        yield base, proc, figures
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def measure_startup(url: str, argv: list[str], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        with api_process(url, argv) as (_base, _proc, figures):
            samples.append(figures)
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


# --- GET /jobs/{id} throughput --------------------------------------------------------------------
def wrk_rps(
    base: str, ids: list[str], duration: int, connections: int, workdir: Path, key: str | None = None
) -> dict[str, Any]:
    script = workdir / "ids.lua"
    chosen = random.sample(ids, min(len(ids), 2000))
    script.write_text(
        "local ids = {" + ",".join(f'"{job_id}"' for job_id in chosen) + "}\n"
        "request = function()\n"
        '  return wrk.format("GET", "/jobs/" .. ids[math.random(#ids)])\n'
        "end\n"
    )
    threads = min(2, connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        *(["-H", f"Authorization: Bearer {key}"] if key else []),
        "-s",
        str(script),
        base,
    ]
    return run_wrk(command)


def run_wrk(command: list[str]) -> dict[str, Any]:
    """Run ``wrk``: requests per second, non-2xx answers, median and 99th percentile latency."""
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    p50 = re.search(r"50%\s+([\d.]+\w+)", output)
    p99 = re.search(r"99%\s+([\d.]+\w+)", output)
    return {
        "tool": "wrk",
        "rps": rps,
        "errors": int(errors.group(1)) if errors else 0,
        "p50": p50.group(1) if p50 else "?",
        "p99": p99.group(1) if p99 else "?",
    }


def wrk_path_rps(base: str, path: str, duration: int, connections: int) -> dict[str, Any]:
    """``wrk`` on one path: requests per second, non-2xx answers, median and 99th percentile latency."""
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        base + path,
    ]
    return run_wrk(command)


def python_path_rps(base: str, path: str, duration: int, connections: int) -> dict[str, Any]:
    return python_rps(base, lambda: path, duration, connections)


def health_rps(base: str, args: argparse.Namespace) -> None:
    """``GET /health`` and ``GET /health/live`` (where this version has it), alternating rounds."""
    with httpx.Client(base_url=base) as client:
        paths = [path for path in ("/health", "/health/live") if client.get(path).status_code == 200]
    measure = wrk_path_rps if shutil.which("wrk") else python_path_rps
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
    for _round in range(args.rounds):
        for path in paths:
            runs[path].append(measure(base, path, args.duration, args.connections))
    for path, results in runs.items():
        rates = sorted(result["rps"] for result in results)
        best = max(results, key=lambda result: result["rps"])
        latency = f", p50 {best['p50']}, p99 {best['p99']}" if "p50" in best else ""
        print(
            f"GET {path}: median {statistics.median(rates):.0f} req/s, best {rates[-1]:.0f} at "
            f"{args.connections} connections ({best['tool']}, {args.rounds} x {args.duration} s, "
            f"{sum(result['errors'] for result in results)} errors{latency})"
        )
    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")


def python_rps(
    base: str,
    next_path: Callable[[], str],
    duration: int,
    connections: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An asyncio load of ``connections`` clients, each asking for ``next_path()`` in turn."""

    async def run() -> tuple[int, int]:
        done = errors = 0
        stop = time.perf_counter() + duration
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10, headers=headers) as client:

            async def worker() -> None:
                nonlocal done, errors
                while time.perf_counter() < stop:
                    response = await client.get(next_path())
                    done += 1
                    errors += response.status_code != 200

            await asyncio.gather(*(worker() for _ in range(connections)))
        return done, errors

    started = time.perf_counter()
    done, errors = asyncio.run(run())
    return {"tool": "python-httpx", "rps": done / (time.perf_counter() - started), "errors": errors}


# --- GET /jobs?limit=100 latency -------------------------------------------------------------------
@contextmanager
def minimal_process(db_path: str) -> Iterator[str]:
    """bench/minimal_api.py on ``db_path``; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "minimal_api.py"), db_path, str(port)], stdin=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit("the minimal app exited")
                try:
                    client.get(f"{base}/jobs/none")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def load(
    base: str,
    ids: list[str],
    args: argparse.Namespace,
    workdir: Path,
    proc: psutil.Process,
    key: str | None = None,
) -> dict[str, Any]:
    headers = None if key is None else {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers) as client:
        for job_id in random.sample(ids, 200):  # warm-up: pool, caches
            assert client.get(f"/jobs/{job_id}").status_code == 200
    cpu_before = sum(proc.cpu_times()[:2])
    if shutil.which("wrk"):
        figures = wrk_rps(base, ids, args.duration, args.connections, workdir, key)
    else:
        figures = python_rps(
            base, lambda: f"/jobs/{random.choice(ids)}", args.duration, args.connections, headers
        )
    requests = figures["rps"] * args.duration
    figures["api_cpu_us_per_request"] = (sum(proc.cpu_times()[:2]) - cpu_before) / requests * 1e6
    return figures


def list_latency(base: str, requests: int) -> dict[str, float]:
    samples = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(20):  # warm-up
            client.get("/jobs", params={"limit": 100})
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get("/jobs", params={"limit": 100})
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and len(response.json()) == 100
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95) - 1],
        "max_ms": samples[-1],
    }


# --- 1 GiB upload -----------------------------------------------------------------------------------
def wav_header(data_bytes: int) -> bytes:
    """A 48 kHz stereo 16-bit PCM WAV header announcing ``data_bytes`` of samples (1 GiB: 93 minutes,
    within the default ``CESAR_MAX_AUDIO_SECONDS``)."""
    rate, channels, bits = 48_000, 2, 16
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits
        )
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def upload_memory(base: str, proc: psutil.Process, total_bytes: int) -> dict[str, float]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    header = wav_header(total_bytes - 44)
    zeros = bytes(MIB)

    def body() -> Iterator[bytes]:
        yield head + header
        left = total_bytes - len(header)
        while left > 0:
            chunk = zeros if left >= MIB else zeros[:left]
            left -= len(chunk)
            yield chunk
        yield tail

    baseline = proc.memory_info().rss
    peak = baseline
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    headers = {
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(head) + total_bytes + len(tail)),
    }
    response = httpx.post(f"{base}/transcribe", content=body(), headers=headers, timeout=600)
    elapsed = time.perf_counter() - started
    sampling = False
    sampler.join()
    if response.status_code != 202:
        raise SystemExit(f"the upload failed: {response.status_code} {response.text[:300]}")
    job_id = response.json()["id"]
    httpx.post(f"{base}/jobs/{job_id}/cancel", timeout=120)
    httpx.delete(f"{base}/jobs/{job_id}", timeout=120)
    return {
        "baseline_rss_mib": baseline / MIB,
        "peak_rss_mib": peak / MIB,
        "growth_mib": (peak - baseline) / MIB,
        "seconds": elapsed,
        "mib_per_s": total_bytes / MIB / elapsed,
    }


# --- report -----------------------------------------------------------------------------------------
def _listener_pid(base: str) -> int:
    port = int(base.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return int(conn.pid)
    raise SystemExit(f"nothing listens on {base}")


# --- a user key against the code before keys ---------------------------------------------------------
BEFORE_KEYS = "migrations/versions/0012_api_keys.py"


def keys_rps(args: argparse.Namespace, workdir: Path) -> None:
    """``GET /jobs/{id}`` with a user key, side by side with the code before keys with its one key."""
    added = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--", BEFORE_KEYS],
        capture_output=True, text=True, check=True,
    ).stdout.split()[-1]  # fmt: skip
    before = workdir / "before"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(before), f"{added}^"],
        check=True,
    )
    try:
        old_url = f"sqlite:///{workdir / 'before.db'}"
        old_env = {"PYTHONPATH": str(before), "CESAR_API_KEY": "the-one-key"}
        seeding = f"import sys; sys.path[:0] = [{str(before)!r}, {str(ROOT / 'bench')!r}]; import api_load; "
        old_ids = json.loads(
            subprocess.run(
                [sys.executable, "-c", seeding + f"import json; print(json.dumps(api_load.seed({old_url!r}, "
                 f"{args.jobs})))"],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        url = f"sqlite:///{workdir / 'cesar.db'}"
        ids = seed(url, args.jobs)
        key = user_key(url, ids)
        print(f"seeded {args.jobs} jobs for each; the code before keys: {added[:10]}^")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the runs")
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        python_m = [sys.executable, "-m", "cesar_api"]
        with (
            api_process(url, python_m) as (base, proc, _figures),
            api_process(old_url, python_m, old_env) as (old_base, old_proc, _old),
        ):
            for _round in range(args.rounds):  # alternating, so both see the same machine
                ours.append(load(base, ids, args, workdir, proc, key))
                theirs.append(load(old_base, old_ids, args, workdir, old_proc, "the-one-key"))
        ratios = [mine["rps"] / old["rps"] for mine, old in zip(ours, theirs, strict=True)]
        print(
            f"GET /jobs/{{id}}, user key: {max(run['rps'] for run in ours):.0f} req/s best, "
            f"{statistics.median(run['api_cpu_us_per_request'] for run in ours):.0f} us API CPU per request; "
            f"before keys: {max(run['rps'] for run in theirs):.0f} req/s best, "
            f"{statistics.median(run['api_cpu_us_per_request'] for run in theirs):.0f} us "
            f"({args.connections} connections, {ours[0]['tool']}, {args.rounds} x {args.duration} s, "
            f"{sum(run['errors'] for run in ours + theirs)} errors)"
        )
        ratio = statistics.median(ratios)
        print(
            "user key / before keys per round: "
            + ", ".join(f"{value:.2f}" for value in ratios)
            + f"; median {ratio:.2f} (target >= {TARGETS['user_key_vs_before']:.2f}): "
            + verdict(ratio, TARGETS["user_key_vs_before"], lower_is_better=False)
        )
        print(f"load average after the runs: {os.getloadavg()[0]:.2f}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)


def user_key(url: str, ids: list[str]) -> str:
    """A user key of the database ``url`` that owns every job of ``ids``; the key itself."""
    from sqlalchemy import update

    from cesar_common.db.store import JobStore
    from cesar_common.db.tables import jobs

    store = JobStore.from_url(url)
    try:
        record, key = store.create_key("bench")
        with store.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(owner=record.id))
    finally:
        store.close()
    return key


def verdict(value: float, target: float, *, lower_is_better: bool) -> str:
    ok = value < target if lower_is_better else value >= target
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of GET /jobs/{id} load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of Cesar and the minimal app"
    )
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--list-requests", type=int, default=300)
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument("--db", help="job database URL (default: a fresh SQLite file); it gets the jobs")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--health", action="store_true", help="only the /health and /health/live rates")
    parser.add_argument(
        "--keys", action="store_true", help="only GET /jobs/{id} with a user key against the code before keys"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cesar-bench-"))
    if args.keys:
        try:
            keys_rps(args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    try:
        url = args.db or f"sqlite:///{workdir / 'cesar.db'}"
        started = time.perf_counter()
        ids = seed(url, args.jobs)
        print(f"seeded {len(ids)} jobs in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the runs")
        if args.health:
            with api_process(url, [sys.executable, "-m", "cesar_api"]) as (base, _proc, _figures):
                health_rps(base, args)
            return

        python_m = [sys.executable, "-m", "cesar_api"]
        cesar_api = [str(Path(sys.executable).with_name("cesar")), "api"]
        startup = measure_startup(url, python_m, args.startup_runs)
        startup_cli = measure_startup(url, cesar_api, max(1, args.startup_runs // 2))
        print(
            f"start-up, python -m cesar_api: {startup['wall_s']:.2f} s wall, {startup['cpu_s']:.2f} s CPU, "
            f"RSS {startup['rss_mib']:.0f} MiB (median of {args.startup_runs})"
        )
        print(
            f"start-up, cesar api (+ schema check): {startup_cli['wall_s']:.2f} s wall, "
            f"{startup_cli['cpu_s']:.2f} s CPU, RSS {startup_cli['rss_mib']:.0f} MiB"
        )

        with api_process(url, python_m) as (base, proc, _figures):
            minimal: dict[str, Any] | None = None
            db_path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
            runs: list[dict[str, Any]] = []
            minimal_runs: list[dict[str, Any]] = []
            for _round in range(args.rounds):  # alternating, so both see the same machine
                runs.append(load(base, ids, args, workdir, proc))
                if db_path is not None:
                    with minimal_process(db_path) as minimal_base:
                        minimal_proc = psutil.Process(_listener_pid(minimal_base))
                        minimal_runs.append(load(minimal_base, ids, args, workdir, minimal_proc))
            load_figures = max(runs, key=lambda run: run["rps"])
            latency = (
                f", p50 {load_figures['p50']}, p99 {load_figures['p99']}" if "p50" in load_figures else ""
            )
            print(
                f"GET /jobs/{{id}}: {load_figures['rps']:.0f} req/s at {args.connections} connections "
                f"({load_figures['tool']}, best of {args.rounds} x {args.duration} s, "
                f"{load_figures['errors']} errors{latency}); "
                f"API CPU {load_figures['api_cpu_us_per_request']:.0f} us per request"
            )
            if minimal_runs:
                minimal = max(minimal_runs, key=lambda run: run["rps"])
                ratios = [
                    ours["rps"] / theirs["rps"] for ours, theirs in zip(runs, minimal_runs, strict=True)
                ]
                minimal["ratio"] = statistics.median(ratios)
                print(
                    f"minimal Litestar app, same row and JSON: {minimal['rps']:.0f} req/s, API CPU "
                    f"{minimal['api_cpu_us_per_request']:.0f} us per request; Cesar/minimal per round "
                    + ", ".join(f"{ratio:.2f}" for ratio in ratios)
                )
            listing = list_latency(base, args.list_requests)
            print(
                f"GET /jobs?limit=100: median {listing['median_ms']:.1f} ms, p95 {listing['p95_ms']:.1f} ms, "
                f"max {listing['max_ms']:.1f} ms ({args.list_requests} requests)"
            )
            upload = None
            if not args.skip_upload:
                upload = upload_memory(base, proc, args.upload_mib * MIB)
                print(
                    f"upload of {args.upload_mib} MiB: RSS {upload['baseline_rss_mib']:.0f} -> peak "
                    f"{upload['peak_rss_mib']:.0f} MiB (growth {upload['growth_mib']:.1f} MiB), "
                    f"{upload['seconds']:.1f} s, {upload['mib_per_s']:.0f} MiB/s"
                )

        print("\ntarget                                  figure        target      verdict")
        rows = [
            ("start-up (python -m cesar_api)", f"{startup['wall_s']:.2f} s", "< 1.5 s",
             verdict(startup["wall_s"], TARGETS["startup_s"], lower_is_better=True)),
            ("GET /jobs/{id}, Cesar / minimal app",
             f"{minimal['ratio']:.2f}" if minimal else "n/a", ">= 0.70",
             verdict(minimal["ratio"], TARGETS["get_job_vs_minimal"], lower_is_better=False)
             if minimal else "SQLite only"),
            ("GET /jobs?limit=100 median", f"{listing['median_ms']:.1f} ms", "< 20 ms",
             verdict(listing["median_ms"], TARGETS["list_median_ms"], lower_is_better=True)),
        ]  # fmt: skip
        if upload is not None:
            rows.append(
                ("RSS growth during the upload", f"{upload['growth_mib']:.1f} MiB", "< 64 MiB",
                 verdict(upload["growth_mib"], TARGETS["upload_rss_growth_mib"], lower_is_better=True))
            )  # fmt: skip
        for name, figure, target, result in rows:
            print(f"{name:<40}{figure:<14}{target:<12}{result}")
        if args.json:
            print(json.dumps({"startup": startup, "startup_cli": startup_cli, "get_job": load_figures,
                              "minimal": minimal, "list": listing, "upload": upload}, indent=2))  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

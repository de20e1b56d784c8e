"""Live event streams under load: ``GET /jobs/{id}/events`` against the targets of its issue.

One API process (``python -m cesar_api``), 50 jobs being transcribed and 500 subscribers spread over them.
This script plays the workers: each job gets a new segment about once a second, written as a worker writes
it (``JobStore.report_progress``: progress, the segment and the lease in one transaction). Then the same
500 clients poll ``GET /jobs/{id}`` once a second instead, with the same writes going on. Measured:

* latency from a segment's commit to its arrival at each subscriber: median and p95. Targets: median at
  most 250 ms on SQLite, at most 100 ms on PostgreSQL;
* database statements per second of the API process (its ``cesar_database_statements_total``, which
  also counts the SQLite watcher's looks), streaming side by side with polling. Target: at most a tenth;
* growth of the API's resident memory from before the subscribers connect to its peak. Target: under
  64 MiB.

    .venv/bin/python bench/events_load.py [--db URL] [--subscribers 500] [--jobs 50] [--seconds 30]

The clients are plain asyncio sockets in this process (a full HTTP client per subscriber would take
most of the machine's CPU from the API). The API shares the machine with them: figures are conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from api_load import api_process, verdict

from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

MIB = 1024 * 1024
LEASE_SECONDS = 3600.0
TARGETS = {
    "latency_median_ms": {"sqlite": 250.0, "postgresql": 100.0},
    "statements_ratio": 0.1,
    "rss_mib": 64.0,
}


# --- the writer: plays the workers -----------------------------------------------------------------------
@dataclass
class Writer:
    """Appends a segment to each job about once a second, round robin; notes when each was committed."""

    store: JobStore
    jobs: list[str]
    committed: dict[tuple[str, int], float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        gap = 1.0 / len(self.jobs)
        turn = time.monotonic()
        while not self.stop.is_set():
            for job_id in self.jobs:
                if self.stop.is_set():
                    return
                index = self.written.get(job_id, 0)
                segment = {
                    "id": index,
                    "start": float(index),
                    "end": index + 0.9,
                    "text": f" Segment {index}.",
                }
                self.store.report_progress(
                    job_id,
                    f"bench-{job_id}",
                    min(0.99, index / 1000),
                    segments=[segment],
                    lease_seconds=LEASE_SECONDS,
                )
                self.committed[(job_id, index)] = time.monotonic()
                self.written[job_id] = index + 1
                turn += gap
                time.sleep(max(0.0, turn - time.monotonic()))


def start_jobs(store: JobStore, count: int) -> list[str]:
    """``count`` URL jobs, each claimed by a worker of its own (``bench-<job id>``)."""
    options = TranscribeOptions(model="tiny.en")
    created = [
        store.create_job(
            NewJob(source=JobSource.URL, options=options, source_url=f"https://example.org/{n}.mp3"), None
        )
        for n in range(count)
    ]
    for job in created:  # claims take the oldest first: the order they were created in
        claimed = store.claim_work(f"bench-{job.id}", lease_seconds=LEASE_SECONDS)
        assert claimed is not None and claimed.id == job.id
    return [job.id for job in created]


# --- the clients ---------------------------------------------------------------------------------------
async def _open(host: str, port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _headers(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def subscriber(
    host: str, port: int, job_id: str, arrivals: list[tuple[str, int, float]], ready: asyncio.Event
) -> None:
    """Follows one job's events, noting when each segment arrives; until cancelled."""
    reader, writer = await _open(host, port, f"/jobs/{job_id}/events")
    try:
        status, headers = await _headers(reader)
        assert status == 200 and headers.get("transfer-encoding") == "chunked", (status, headers)
        buffer = b""
        first = True
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            chunk = await reader.readexactly(size + 2)
            now = time.monotonic()
            buffer += chunk[:-2]
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"id:") and b"\nevent: segment\n" in event:
                    data = json.loads(event.partition(b"\ndata: ")[2])
                    arrivals.append((job_id, int(data["id"]), now))
            if first:
                first = False
                ready.set()
    finally:
        writer.close()


async def poller(host: str, port: int, job_id: str, period: float, offset: float, stop: asyncio.Event) -> int:
    """``GET /jobs/{id}`` every ``period`` seconds on one kept-alive connection; the number of answers."""
    await asyncio.sleep(offset)
    reader, writer = await asyncio.open_connection(host, port)
    answered = 0
    try:
        next_at = time.monotonic()
        while not stop.is_set():
            writer.write(f"GET /jobs/{job_id} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, headers = await _headers(reader)
            await reader.readexactly(int(headers["content-length"]))
            assert status == 200
            answered += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        writer.close()
    return answered


# --- the API's side ---------------------------------------------------------------------------------------
def statements(base: str) -> float:
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=30).text
    match = re.search(r"^cesar_database_statements_total ([\d.e+]+)$", text, re.MULTILINE)
    assert match, "no cesar_database_statements_total in /metrics"
    return float(match.group(1))


class PeakRss:
    """Samples a process's resident memory every 0.2 s in a thread; ``peak`` in bytes."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def close(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def stream_phase(
    base: str, jobs: list[str], subscribers: int, seconds: float, writer: Writer
) -> dict[str, Any]:
    host, port = base.removeprefix("http://").split(":")
    arrivals: list[tuple[str, int, float]] = []
    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = []
    for n in range(subscribers):
        tasks.append(
            asyncio.create_task(subscriber(host, int(port), jobs[n % len(jobs)], arrivals, readies[n]))
        )
        if n % 50 == 49:
            await asyncio.sleep(0.05)  # connect in waves, as clients would
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 120)
    arrivals.clear()  # from here on: the steady state
    before, started = statements(base), time.monotonic()
    await asyncio.sleep(seconds)
    after, ended = statements(base), time.monotonic()
    dropped = sum(task.done() for task in tasks)  # streams that ended: cut off, or failed
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [
        (arrived - writer.committed[(job_id, index)]) * 1000
        for job_id, index, arrived in arrivals
        if (job_id, index) in writer.committed
    ]
    return {
        "events": len(latencies),
        "median_ms": statistics.median(latencies),
        "p95_ms": statistics.quantiles(latencies, n=20)[-1],
        "p99_ms": statistics.quantiles(latencies, n=100)[-1],
        "max_ms": max(latencies),
        "dropped": dropped,
        "statements_per_s": (after - before - 1) / (ended - started),  # less this phase's own scrape
    }


async def poll_phase(base: str, jobs: list[str], clients: int, seconds: float) -> dict[str, Any]:
    host, port = base.removeprefix("http://").split(":")
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(poller(host, int(port), jobs[n % len(jobs)], 1.0, n / clients, stop))
        for n in range(clients)
    ]
    await asyncio.sleep(2.0)  # all connected and polling
    before, started = statements(base), time.monotonic()
    await asyncio.sleep(seconds)
    after, ended = statements(base), time.monotonic()
    stop.set()
    answered = sum(await asyncio.gather(*tasks))
    return {"requests": answered, "statements_per_s": (after - before - 1) / (ended - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="job database URL (default: a fresh SQLite file)")
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measured phase")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cesar-bench-"))
    url = args.db or f"sqlite:///{workdir / 'cesar.db'}"
    from cesar.schema import upgrade_database

    upgrade_database(url)
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    store = JobStore.from_url(url)
    jobs = start_jobs(store, args.jobs)
    writer = Writer(store, jobs)
    writing = threading.Thread(target=writer.run, name="writer", daemon=True)
    print(
        f"{args.jobs} jobs processing, {args.subscribers} clients, {backend}; "
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    with api_process(url, [sys.executable, "-m", "cesar_api"]) as (base, proc, _figures):
        writing.start()
        time.sleep(2.0)
        baseline = proc.memory_info().rss
        peak = PeakRss(proc)
        streamed = asyncio.run(stream_phase(base, jobs, args.subscribers, args.seconds, writer))
        peak_rss = peak.close()
        polled = asyncio.run(poll_phase(base, jobs, args.subscribers, args.seconds))
        writer.stop.set()
        writing.join()
    store.close()
    growth = (peak_rss - baseline) / MIB
    ratio = streamed["statements_per_s"] / polled["statements_per_s"]
    print(
        f"streaming: {streamed['events']} segment events in {args.seconds:.0f} s; commit to arrival median "
        f"{streamed['median_ms']:.0f} ms, p95 {streamed['p95_ms']:.0f} ms, p99 {streamed['p99_ms']:.0f} ms, "
        f"max {streamed['max_ms']:.0f} ms; {streamed['statements_per_s']:.1f} database statements/s; "
        f"{streamed['dropped']} streams ended early"
    )
    print(
        f"polling once a second: {polled['requests']} requests answered; "
        f"{polled['statements_per_s']:.1f} database statements/s"
    )
    print(f"API RSS {baseline / MIB:.0f} MiB before the subscribers, peak {peak_rss / MIB:.0f} MiB")
    latency_target = TARGETS["latency_median_ms"][backend]
    print("\ntarget                                  figure        target      verdict")
    rows = [
        ("commit to arrival, median", f"{streamed['median_ms']:.0f} ms", f"<= {latency_target:.0f} ms",
         verdict(streamed["median_ms"], latency_target, lower_is_better=True)),
        ("statements/s, streaming / polling", f"{ratio:.3f}", "<= 0.1",
         verdict(ratio, TARGETS["statements_ratio"], lower_is_better=True)),
        ("API RSS growth", f"{growth:.1f} MiB", "< 64 MiB",
         verdict(growth, TARGETS["rss_mib"], lower_is_better=True)),
    ]  # fmt: skip
    for name, figure, target, result in rows:
        print(f"{name:<40}{figure:<14}{target:<12}{result}")
    if args.json:
        print(json.dumps({"streamed": streamed, "polled": polled, "rss_growth_mib": growth, "ratio": ratio}))


if __name__ == "__main__":
    main()

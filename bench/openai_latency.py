"""The OpenAI-compatible route, side by side with what it wraps (issue 15).

1. starts the real `cesar serve` with its default settings on a fresh SQLite file and waits until every
   worker is up (their models are loaded at start); this process loads the same model with the same
   settings;
2. latency, ``--rounds`` times alternately: ``speech_en.wav`` (7 s) transcribed in this process, and the
   same file through ``POST /v1/audio/transcriptions`` with the official ``openai`` client on the idle
   server. The added latency is the difference of the medians. Target: at most 150 ms;
3. throughput, alternately: ``--jobs`` concurrent ``/v1`` requests, and the same files through
   ``POST /transcribe`` then polling each job (every 0.1 s) until it is completed, both timed from the first
   request to the last transcript. Target: ``/v1`` at no less than 0.90 of the polling clients'
   throughput.

    .venv/bin/python bench/openai_latency.py [--rounds 10] [--jobs 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
from serving import AUDIO_DIR, running_serve

from cesar_common.settings import Settings
from cesar_common.transcription import loading, whisper

SPEECH = AUDIO_DIR / "speech_en.wav"
TARGETS = {"added_ms": 150.0, "throughput": 0.90}


def via_openai(client: openai.OpenAI) -> float:
    started = time.perf_counter()
    with SPEECH.open("rb") as audio:
        text = client.audio.transcriptions.create(model="whisper-1", file=audio).text
    assert "lazy" in text.lower(), text
    return time.perf_counter() - started


def in_process(model: loading.LoadedModel, options: whisper.DecodeOptions) -> float:
    started = time.perf_counter()
    result = whisper.transcribe(model, SPEECH, options)
    assert "lazy" in result.text.lower(), result.text
    return time.perf_counter() - started


def spread(seconds: list[float]) -> str:
    low, high = min(seconds) * 1000, max(seconds) * 1000
    return f"median {statistics.median(seconds) * 1000:.0f} ms ({low:.0f}-{high:.0f})"


def concurrent_openai(client: openai.OpenAI, jobs: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda _n: via_openai(client), range(jobs)))
    return time.perf_counter() - started


def concurrent_polling(base: str, jobs: int) -> float:
    def one(http: httpx.Client) -> None:
        with SPEECH.open("rb") as audio:
            reply = http.post("/transcribe", files={"file": (SPEECH.name, audio)})
        job_id = reply.json()["id"]
        while (status := http.get(f"/jobs/{job_id}").json()["status"]) != "completed":
            assert status in {"queued", "processing"}, status
            time.sleep(0.1)
        assert "lazy" in http.get(f"/jobs/{job_id}/transcript").text.lower()

    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=600) as http, ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda _n: one(http), range(jobs)))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--throughput-rounds", type=int, default=2)
    args = parser.parse_args()

    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="cesar-bench-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'cesar.db'}"
        with running_serve(db_url, log_path=Path(tmp) / "serve.log", workers="auto", timeout=180) as serve:
            layout = next(line for line in serve.log().splitlines() if line.startswith("Starting "))
            worker_threads = re.search(r"x (\d+) thread", layout)  # the workers' threads, for a fair match
            model = loading.load_model(
                settings.model,
                device=settings.device,
                compute_type=settings.compute_type,
                threads=int(worker_threads.group(1)) if worker_threads else settings.threads,
                offline=True,
            )
            options = whisper.DecodeOptions(batch_size=settings.batch_size)
            print(
                f"{SPEECH.name}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; serve: "
                f"{layout.removeprefix('Starting ')}; in-process: {model.device} {model.compute_type}, "
                f"threads={model.threads or 'default'}"
            )
            client = openai.OpenAI(base_url=f"{serve.url}/v1", api_key="unused", max_retries=0)
            via_openai(client), in_process(model, options)  # warm-up
            local, remote = [], []
            for _round in range(args.rounds):
                local.append(in_process(model, options))
                remote.append(via_openai(client))
            added = (statistics.median(remote) - statistics.median(local)) * 1000
            print(f"latency: in-process {spread(local)}, /v1 {spread(remote)}: added {added:.0f} ms")
            ratios = []
            for round_no in range(1, args.throughput_rounds + 1):
                polled = concurrent_polling(serve.url, args.jobs)
                streamed = concurrent_openai(client, args.jobs)
                ratios.append(polled / streamed)
                print(
                    f"throughput round {round_no}: {args.jobs} concurrent /v1 requests {streamed:.2f} s, "
                    f"POST /transcribe + polling {polled:.2f} s: ratio {polled / streamed:.3f}"
                )
    ratio = statistics.median(ratios)
    print("\ntarget                                  figure        target      verdict")
    rows = [
        ("added latency, 7 s file (median)", f"{added:.0f} ms", "<= 150 ms", added <= TARGETS["added_ms"]),
        ("/v1 throughput / polling", f"{ratio:.3f}", ">= 0.90", ratio >= TARGETS["throughput"]),
    ]
    for name, figure, target, met in rows:
        print(f"{name:<40}{figure:<14}{target:<12}{'PASS' if met else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

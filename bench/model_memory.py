"""A worker process's memory as it takes jobs for two models (issue 29): tiny.en (bundled) and base
(multilingual), side by side in two real workers (``cesar worker``, CPU, int8, one thread), one with room
for both models in its budget, one with room for one.

Each worker starts with no model loaded, then runs a tiny.en job, a base job and a tiny.en job again (the
7 s speech_en.wav). After each job, once the worker's presence row shows it: the process's resident memory
(RSS) and its peak so far (VmHWM), both read from /proc, and the models it holds. With room for one, the
base job unloads tiny.en and the last job unloads base: what unloading gives back shows as the RSS next to
the roomy worker's. At the end, each model's estimate (from its files) and measurement (the RSS it added
as it loaded) as the worker reports them.

    .venv/bin/python bench/model_memory.py [--roomy-mb 1000] [--tight-mb 160]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cesar_common.db.connect import open_engine
from cesar_common.db.migrate import upgrade_to_head
from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio" / "speech_en.wav"
MIB = 2**20
STEPS = ("tiny.en", "base", "tiny.en")


@dataclass
class Worker:
    label: str
    budget_mb: int
    store: JobStore
    process: subprocess.Popen[bytes]
    rows: list[tuple[int, int, list[str]]] = field(default_factory=list)  # RSS, peak (MiB), models held

    def figures(self) -> tuple[int, int]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = {
            line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Vm")
        }
        return kib["VmRSS"] // 1024, kib["VmHWM"] // 1024

    def presence(self) -> dict[str, Any]:
        rows = self.store.list_workers(alive_within_seconds=60)
        return rows[0].memory or {} if rows else {}

    def held(self) -> list[str]:
        return [model["name"] for model in self.presence().get("models", [])]

    def record(self) -> None:
        rss, peak = self.figures()
        self.rows.append((rss, peak, self.held()))


def start(label: str, budget_mb: int, tmp: Path) -> Worker:
    url = f"sqlite:///{tmp / label}.db"
    engine = open_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    env = {
        **os.environ,
        "CESAR_MODELS": "base",
        "CESAR_WORKER_MODEL_MEMORY_MB": str(budget_mb),
        "CESAR_OFFLINE": "1",
        "CESAR_LIVE_SESSIONS": "0",
        "CESAR_LOG_LEVEL": "warning",
    }
    argv = [sys.executable, "-m", "cesar", "worker", "--db", url, "--device", "cpu", "--compute-type", "int8"]
    process = subprocess.Popen([*argv, "--threads", "1"], env=env, cwd=ROOT)
    worker = Worker(label, budget_mb, JobStore.from_url(url), process)
    deadline = time.monotonic() + 60
    while not worker.store.list_workers(alive_within_seconds=60):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the {label} worker did not start")
        time.sleep(0.1)
    time.sleep(1.0)  # settled: its threads started, its first presence written
    worker.record()
    return worker


def run_job(worker: Worker, model: str) -> None:
    new = NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model=model), filename=AUDIO.name)
    with AUDIO.open("rb") as audio:
        job_id = worker.store.create_job(new, audio).id
    deadline = time.monotonic() + 300
    while not (job := worker.store.get_job(job_id)).is_final:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model} job did not finish on the {worker.label} worker")
        time.sleep(0.1)
    if job.error_message:
        raise RuntimeError(f"{model} job failed on the {worker.label} worker: {job.error_message}")
    deadline = time.monotonic() + 15  # its presence row, refreshed within a second or so of the job's end
    while model not in worker.held() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # and refreshed again with the worker idle, its loads and unloads counted
    worker.record()


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown CPU",
    )
    memory = psutil.virtual_memory()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, {memory.total / 2**30:.1f} GiB "
        f"({memory.available / 2**30:.1f} available); load average {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roomy-mb", type=int, default=1000, help="budget with room for both models")
    parser.add_argument("--tight-mb", type=int, default=160, help="budget with room for one (base)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="cesar-model-memory-") as tmp:
        workers = [start("roomy", args.roomy_mb, Path(tmp)), start("tight", args.tight_mb, Path(tmp))]
        try:
            for model in STEPS:
                for worker in workers:
                    run_job(worker, model)
            report(workers)
        finally:
            for worker in workers:
                worker.process.terminate()
                worker.process.wait(30)
                worker.store.close()
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


def report(workers: list[Worker]) -> None:
    steps = ["started, nothing loaded", *[f"after a {model} job" for model in STEPS]]
    head = "".join(f" | {f'{w.label} worker, budget {w.budget_mb} MiB':<40}" for w in workers)
    print(f"\n{'':<24}{head}")
    print(f"{'':<24}" + "".join(f" | {'RSS':>6} {'peak':>6}  {'models held':<25}" for _ in workers))
    for index, step in enumerate(steps):
        cells = []
        for worker in workers:
            rss, peak, held = worker.rows[index]
            cells.append(f" | {rss:>6} {peak:>6}  {', '.join(held) or '-':<25}")
        print(f"{step:<24}" + "".join(cells))
    print()
    for worker in workers:
        memory = worker.presence()
        models = "; ".join(
            f"{m['name']}: estimated {m['estimated_bytes'] / MIB:.0f} MiB, measured "
            f"{'?' if m['measured_bytes'] is None else round(m['measured_bytes'] / MIB)} MiB"
            for m in memory.get("models", [])
        )
        print(f"{worker.label}: {memory.get('loads')} loads, {memory.get('unloads')} unloads; holds {models}")


if __name__ == "__main__":
    main()

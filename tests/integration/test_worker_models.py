"""Several models in one worker, for real: the worker loop with the real transcriber runs jobs for tiny.en
(bundled) and base (multilingual, packaged), each model loaded once and kept within the worker's memory
budget, the least recently used unloaded for the next one, a model too large for the budget a clear job
error; ``GET /health`` and ``GET /metrics`` show what the worker holds."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from api_helpers import Api, health_when, running_api
from prometheus_client.parser import text_string_to_metric_families
from worker_support import submit_file, wait_final

from cesar_common.db.records import JobRecord, JobStatus
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings
from cesar_worker.transcriber import WhisperTranscriber
from cesar_worker.worker import Worker

MODELS = ["base"]  # beside the default, tiny.en
SETTINGS: dict[str, Any] = {
    "lease_seconds": 30.0,
    "poll_max_seconds": 0.2,
    "live_sessions": 0,
    "offline": True,
}


@contextmanager
def real_worker(url: str, worker_id: str, budget_mb: int) -> Iterator[Worker]:
    """The worker loop and the real transcriber (CPU, int8, one thread), in a thread of this process."""
    settings = Settings(
        database_url=url,
        models=MODELS,
        worker_model_memory_mb=budget_mb,
        device="cpu",
        compute_type="int8",
        threads=1,
        **SETTINGS,
    )
    store = JobStore.from_url(url)
    stop = threading.Event()
    worker = Worker(settings, store, WhisperTranscriber(settings), worker_id=worker_id, stop_event=stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(30)
        store.close()
        assert not thread.is_alive(), "the worker did not stop"


def run(store: JobStore, audio: Path, model: str) -> JobRecord:
    return wait_final(store, submit_file(store, audio, model=model).id, timeout=120)


def shown(api: Api, worker_id: str, wanted: Any) -> dict[str, Any]:
    """The worker's entry in /health once ``wanted(entry)``."""

    def entry(response: httpx.Response) -> dict[str, Any]:
        found = [w for w in response.json()["workers"]["workers"] if w["id"] == worker_id]
        return found[0] if found else {}

    return entry(health_when(api, lambda response: bool(wanted(entry(response)))))


def models_of(entry: dict[str, Any]) -> list[str]:
    return [model["name"] for model in entry.get("models", [])]


def scrape(api: Api, worker_id: str) -> dict[tuple[str, str], float]:
    """The worker's memory samples in /metrics: (sample name, model or "") -> value."""
    found = {}
    for family in text_string_to_metric_families(api.client.get("/metrics").text):
        for sample in family.samples:
            if sample.labels.get("worker") == worker_id:
                found[(sample.name, sample.labels.get("model", ""))] = sample.value
    return found


def test_two_real_models_in_one_worker_within_its_memory_budget(sqlite_url: str, audio_dir: Path) -> None:
    speech = audio_dir / "speech_en.wav"
    with running_api(sqlite_url, models=MODELS) as api:
        store = api.store

        # room for both: four jobs alternating between them load each once
        with real_worker(sqlite_url, "roomy", budget_mb=1000) as worker:
            for model in ("tiny.en", "base", "tiny.en", "base"):
                job = run(store, speech, model)
                assert job.status is JobStatus.COMPLETED, job
                assert "fox" in (job.result_text or "").lower(), job.result_text
            cache = worker.transcriber.cache  # type: ignore[attr-defined]
            assert (cache.loads, cache.unloads) == (2, 0)
            entry = shown(api, "roomy", lambda e: models_of(e) == ["tiny.en", "base"])
            assert (entry["model_loads"], entry["model_unloads"], entry["memory_budget_mb"]) == (2, 0, 1000)
            tiny, base = entry["models"]
            assert (tiny["device"], tiny["compute_type"]) == ("cpu", "int8")
            assert 60 <= tiny["estimated_mb"] <= 80 and 120 <= base["estimated_mb"] <= 150
            assert 0 < tiny["measured_mb"] < base["measured_mb"]
            assert entry["rss_mb"] > tiny["measured_mb"] + base["measured_mb"]
            metrics = scrape(api, "roomy")
            assert metrics[("cesar_worker_model_loads_total", "")] == 2
            assert metrics[("cesar_worker_model_memory_budget_bytes", "")] == 1000 * 2**20
            assert abs(metrics[("cesar_worker_model_memory_bytes", "base")] / 2**20 - base["measured_mb"]) < 1
            assert ("cesar_worker_model_memory_bytes", "tiny.en") in metrics
            assert metrics[("cesar_worker_resident_memory_bytes", "")] > 0

        # room for one: base needs tiny.en's room, and tiny.en is unloaded, its memory freed
        with real_worker(sqlite_url, "tight", budget_mb=160) as worker:
            transcriber: WhisperTranscriber = worker.transcriber  # type: ignore[assignment]
            assert run(store, speech, "tiny.en").status is JobStatus.COMPLETED
            tiny_weights = weakref.ref(transcriber.cache.get(transcriber._key("tiny.en")).whisper)
            assert shown(api, "tight", lambda e: models_of(e) == ["tiny.en"])
            job = run(store, speech, "base")
            assert job.status is JobStatus.COMPLETED, job
            gc.collect()
            assert tiny_weights() is None  # nothing kept the unloaded model alive
            entry = shown(api, "tight", lambda e: models_of(e) == ["base"])
            assert (entry["model_loads"], entry["model_unloads"], entry["memory_budget_mb"]) == (2, 1, 160)
            assert scrape(api, "tight")[("cesar_worker_model_unloads_total", "")] == 1

        # too little room for base even alone: its job fails with why, and tiny.en's jobs go on
        with real_worker(sqlite_url, "small", budget_mb=100) as worker:
            failed = run(store, speech, "base")
            assert (failed.status, failed.error_code) == (JobStatus.ERROR, "model_too_large"), failed
            message = failed.error_message or ""
            assert message.startswith("model 'base' needs ~"), message
            assert message.endswith(
                "MB on cpu (int8), the worker's budget is 100 MB (CESAR_WORKER_MODEL_MEMORY_MB)"
            )
            assert run(store, speech, "tiny.en").status is JobStatus.COMPLETED
            entry = shown(api, "small", lambda e: models_of(e) == ["tiny.en"])
            assert (entry["model_loads"], entry["model_unloads"]) == (1, 0)


def test_the_presence_row_carries_what_the_models_take(store: JobStore) -> None:
    memory = {
        "budget_bytes": 160 * 2**20,
        "rss_bytes": 400 * 2**20,
        "loads": 2,
        "unloads": 1,
        "models": [
            {
                "name": "base",
                "device": "cpu",
                "compute_type": "int8",
                "estimated_bytes": 1,
                "measured_bytes": None,
            }
        ],
    }
    store.register_worker("w1", host="h", pid=1)
    store.heartbeat_worker("w1", current_job_id=None, models=["base"], memory=memory)
    [row] = store.list_workers(alive_within_seconds=60)
    assert (row.models, row.memory) == (["base"], memory)
    assert [worker.memory for worker in store.metrics_snapshot(alive_within_seconds=60).workers] == [memory]
    store.heartbeat_worker("w1", current_job_id=None, models=[])  # a worker that does not say
    assert store.list_workers(alive_within_seconds=60)[0].memory is None
    store.unregister_worker("w1")
    store.heartbeat_worker("w1", current_job_id=None, models=["base"], memory=memory)  # its row recreated
    assert store.list_workers(alive_within_seconds=60)[0].memory == memory

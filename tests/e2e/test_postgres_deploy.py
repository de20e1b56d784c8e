"""The multi-host deployment, on one machine: PostgreSQL, `cesar db upgrade`, `cesar api` alone and two
separate `cesar worker` processes (as on two other hosts: all they share is CESAR_DATABASE_URL)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import (
    AUDIO_DIR,
    CESAR,
    SPEECH_FILES,
    SPEECH_WORDS,
    CesarProcess,
    Client,
    cesar_env,
    free_port,
    serving_directory,
    start_cesar,
)

from cesar_common.db.store import JobStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def deployment(postgres_url: str, tmp_path: Path) -> Iterator[tuple[CesarProcess, list[CesarProcess]]]:
    env = {"CESAR_DATABASE_URL": postgres_url}
    # the release step, as the Procfile runs it (a no-op on the fixture's already migrated database)
    subprocess.run(
        [str(CESAR), "db", "upgrade"],
        cwd=REPO,
        env=cesar_env(env),
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    api = start_cesar(["api"], log_path=tmp_path / "api.log", env={**env, "CESAR_PORT": str(port)}, port=port)
    workers = [
        start_cesar(["worker", "--worker-id", f"host-{n}"], log_path=tmp_path / f"worker{n}.log", env=env)
        for n in (1, 2)
    ]
    try:
        api.wait_healthy(workers=2, timeout=90)
        yield api, workers
    finally:
        for process in [api, *workers]:
            if process.process.poll() is None:
                process.stop(timeout=30)
            process.kill_everything()


def test_api_alone_and_two_separate_workers_on_postgresql(
    deployment: tuple[CesarProcess, list[CesarProcess]], postgres_url: str
) -> None:
    api, workers = deployment
    client = Client(api.url)
    with serving_directory(AUDIO_DIR) as audio_url:
        ids = [client.upload(AUDIO_DIR / name) for name in SPEECH_FILES]
        ids.append(client.submit_url(f"{audio_url}/speech_en.mp3"))
        jobs = client.wait_all(ids, timeout=120)
    for job_id in ids:
        assert jobs[job_id]["status"] == "completed", jobs[job_id]
        text = client.transcript(job_id).lower()
        assert all(word in text for word in SPEECH_WORDS), text
    client.close()

    store = JobStore.from_url(postgres_url)
    try:
        taken_by = {store.get_job(job_id).worker_id for job_id in ids}
    finally:
        store.close()
    assert taken_by == {"host-1", "host-2"}  # both "hosts" took jobs

    for worker in workers:  # SIGTERM: each stops cleanly, as under systemd or honcho
        assert worker.stop() == 0
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: a clean exit by that signal
    assert api.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in api.log()

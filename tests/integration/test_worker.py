"""Real `python -m cesar_worker` processes, real Whisper (tiny.en), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_support import (
    REPO,
    WorkerProcess,
    audio_server,
    submit_file,
    submit_url,
    wait_final,
    wait_for,
    worker_processes,
)

from cesar_common.db.records import JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.job_json import job_json

StartWorker = Callable[..., WorkerProcess]
NOT_HERE = "cesar-tests/no-such-model"  # allowed, but not on this machine (and never downloaded offline)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    with worker_processes(tmp_path) as start:
        yield start


@pytest.fixture
def job_store(db_url: str) -> Iterator[JobStore]:
    store = JobStore.from_url(db_url)
    yield store
    store.close()


def words(text: str | None) -> str:
    return (text or "").lower()


def test_jobs_complete_or_fail_with_a_message_and_sigterm_loses_nothing(
    db_url: str, job_store: JobStore, start_worker: StartWorker, audio_dir: Path
) -> None:
    with audio_server(audio_dir) as server:
        speech = submit_file(job_store, audio_dir / "speech_en.wav")
        junk = submit_file(job_store, audio_dir / "junk.mp3")
        from_url = submit_url(job_store, f"{server}/audio/speech_en.mp3")
        missing = submit_url(job_store, f"{server}/audio/missing.mp3")
        unavailable = submit_file(job_store, audio_dir / "speech_en.wav", model=NOT_HERE)
        empty = submit_file(job_store, audio_dir / "empty.wav")
        klingon = submit_file(job_store, audio_dir / "speech_en.wav", language="tlh")
        env = {
            "CESAR_ALLOW_PRIVATE_URLS": "true",
            "CESAR_OFFLINE": "true",
            "CESAR_MODELS": f"tiny.en,{NOT_HERE}",
            "CESAR_SHUTDOWN_GRACE_SECONDS": "0",
        }
        worker = start_worker(db_url, "--preload", env=env)
        jobs = (speech, junk, from_url, missing, unavailable, empty, klingon)
        results = {job.id: wait_final(job_store, job.id) for job in jobs}

    job = results[speech.id]
    assert job.status is JobStatus.COMPLETED, job
    assert "lazy" in words(job.result_text) and "transcription" in words(job.result_text)
    assert job.detected_language == "en" and 0.5 < (job.language_probability or 0) <= 1
    assert job.duration == pytest.approx(7.15, abs=0.1)
    assert job.segments and {"start", "end", "text"} <= set(job.segments[0])
    assert job.segments[-1]["end"] <= job.duration + 0.01
    assert job.decoding is not None and (job.decoding.device, job.decoding.mode) == ("cpu", "batched")
    assert job.decoding.batch_size == 4 and job.decoding.compute_type
    assert (job.progress, job.attempts) == (1.0, 1)
    assert job.started_at and job.completed_at and job.created_at <= job.started_at <= job.completed_at

    job = results[junk.id]
    assert (job.status, job.error_code) == (JobStatus.ERROR, "decode_failed"), job
    assert "junk.mp3" in (job.error_message or "") and "\n" not in (job.error_message or "")

    job = results[from_url.id]
    assert job.status is JobStatus.COMPLETED, job
    assert "lazy" in words(job.result_text)

    job = results[missing.id]
    assert (job.status, job.error_code) == (JobStatus.ERROR, "download_failed"), job
    assert job.error_message == "download failed: 404 Not Found from 127.0.0.1"

    job = results[unavailable.id]
    assert (job.status, job.error_code) == (JobStatus.ERROR, "model_not_found"), job
    assert "offline mode is on" in (job.error_message or "")

    job = results[empty.id]
    assert (job.status, job.error_code) == (JobStatus.ERROR, "decode_failed"), job
    assert job.error_message == "the uploaded file is empty (0 bytes)"

    job = results[klingon.id]
    assert (job.status, job.error_code) == (JobStatus.ERROR, "unknown_language"), job
    assert "unknown language code 'tlh'" in (job.error_message or "")
    assert {results[job.id].attempts for job in jobs} == {1}  # failures are not retried

    presence = job_store.list_workers(alive_within_seconds=60)
    assert [row.pid for row in presence] == [worker.pid]
    assert presence[0].models == ["tiny.en"]  # the model that could not be found evicted nothing

    # SIGTERM mid-job, no grace period: the job stops at its next segment and goes back to the queue
    # (a batch is decoded whole: the long story's windows come out as many segments after it)
    running = submit_file(job_store, audio_dir / "speech_en_long.flac")
    queued = submit_file(job_store, audio_dir / "speech_en_stereo44k.wav")
    wait_for(job_store, running.id, lambda job: job.status is JobStatus.PROCESSING, what="processing")
    worker.terminate()
    assert worker.wait() == 0
    job = job_store.get_job(running.id)
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.QUEUED, 0, None), job
    assert job_store.get_job(queued.id).status is JobStatus.QUEUED
    assert job_store.list_workers(alive_within_seconds=60) == []
    log = worker.log()
    assert f"job {speech.id} completed model=tiny.en audio=7.2s wall=" in log
    assert f"job {running.id} handed back" in log
    assert "Traceback" not in log

    # nothing was lost: the next worker does both
    again = start_worker(db_url, "--once")
    assert again.wait(120) == 0, again.log()
    for job_id in (running.id, queued.id):
        job = job_store.get_job(job_id)
        assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1), job


def test_cancel_a_running_long_job_then_shut_down_gracefully(
    db_url: str, job_store: JobStore, start_worker: StartWorker, audio_dir: Path
) -> None:
    worker = start_worker(db_url, "--preload", env={"CESAR_SHUTDOWN_GRACE_SECONDS": "60"})
    worker.wait_ready()
    long = submit_file(job_store, audio_dir / "speech_en_long.flac")
    after = submit_file(job_store, audio_dir / "speech_en.wav")
    # cancel while it runs (batched decoding yields no segment, hence no progress, before its batch is done)
    wait_for(job_store, long.id, lambda job: job.status is JobStatus.PROCESSING, what="processing")
    job_store.request_cancel(long.id)
    job = wait_final(job_store, long.id)
    assert job.status is JobStatus.CANCELLED, job
    assert job.result_text is None and job.progress < 1

    # the worker goes on; SIGTERM while the next job runs lets it finish, and claims nothing more
    wait_for(job_store, after.id, lambda job: job.status is not JobStatus.QUEUED, what="the next claim")
    worker.terminate()
    queued = submit_file(job_store, audio_dir / "speech_en.wav")
    assert worker.wait() == 0
    assert job_store.get_job(after.id).status is JobStatus.COMPLETED
    left = job_store.get_job(queued.id)
    assert left.status is JobStatus.QUEUED, (left, worker.log())


def test_the_cli_documents_its_options_and_the_module_takes_none() -> None:
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "cesar"), "worker", "--help"], capture_output=True, text=True
    )
    assert cli.returncode == 0
    for option in ("--db", "--model", "--once", "--worker-id", "--preload", "CESAR_DATABASE_URL"):
        assert option in cli.stdout
    # `python -m cesar_worker` is configured by CESAR_* variables alone (as `cesar serve` starts it)
    module = subprocess.run(
        [sys.executable, "-m", "cesar_worker", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert module.returncode == 1
    assert module.stderr.strip().splitlines() == [
        "error: python -m cesar_worker takes no arguments: it reads CESAR_* variables "
        "(see `cesar worker --help`)"
    ]


OUTDATED = [
    "error: the database schema is behind this version of Cesar: run `cesar db upgrade` "
    "(or start `cesar serve`, which upgrades the database itself)"
]


@pytest.mark.parametrize("entry", ["cli", "module"])
def test_an_outdated_schema_is_refused_in_one_line(tmp_path: Path, entry: str) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    command = (
        [sys.executable, "-m", "cesar", "worker", "--db", url, "--once"]
        if entry == "cli"
        else [sys.executable, "-m", "cesar_worker"]
    )
    env = {**os.environ, "CESAR_DATABASE_URL": url}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == OUTDATED


def test_a_diarized_job_names_its_speakers(
    db_url: str, job_store: JobStore, start_worker: StartWorker, audio_dir: Path
) -> None:
    path = audio_dir / "two_speakers.wav"
    new = NewJob(
        source=JobSource.UPLOAD,
        options=TranscribeOptions(model="tiny.en", diarize=True, max_speakers=4),
        filename=path.name,
    )
    with path.open("rb") as audio:
        submitted = job_store.create_job(new, audio)
    worker = start_worker(db_url, "--once", env={"CESAR_OFFLINE": "true"})
    assert worker.wait(600) == 0, worker.log()
    job = job_store.get_job(submitted.id, with_segments=True)
    assert job.status is JobStatus.COMPLETED, job
    assert job.options.diarize is True
    assert [speaker["speaker"] for speaker in job.speakers or []] == ["SPEAKER_00", "SPEAKER_01"]
    assert job.segments and {segment["speaker"] for segment in job.segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert all("words" not in segment for segment in job.segments)  # not asked for
    assert json.loads(job_json(job))["speakers"] == job.speakers

"""The real `cesar serve` in a subprocess, on a free port and a temporary SQLite file, over HTTP.

Issue 6's proof: every fixture format and a URL job come out right; a restart finds every job again; a
worker killed with -9 is restarted and its job completes; SIGTERM mid-job hands the job back and the next
start completes it; a port in use is one line; serve killed with -9 leaves no process behind. Issue 7's: two
workers on SQLite both take jobs.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
from serve_helpers import (
    AUDIO_DIR,
    CESAR,
    Client,
    cesar_env,
    free_port,
    running_serve,
    serving_directory,
    wait_for,
)

from cesar_common.db.store import JobStore

SPEECH_FILES = [
    "speech_en.wav",
    "speech_en.flac",
    "speech_en.mp3",
    "speech_en.m4a",
    "speech_en.ogg",
    "speech_en.webm",
    "speech_en_stereo44k.wav",
]
SPEECH_WORDS = ("lazy", "transcription", "fast", "reliable")
LONG_WORDS = ("chapter", "mill", "museum", "spring")


def assert_words(text: str, words: tuple[str, ...]) -> None:
    lowered = text.lower()
    missing = [word for word in words if word not in lowered]
    assert not missing, f"{missing} not in {text!r}"


def worker_ids(db_url: str, job_ids: list[str]) -> set[str | None]:
    store = JobStore.from_url(db_url)
    try:
        return {store.get_job(job_id).worker_id for job_id in job_ids}
    finally:
        store.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'cesar.db'}"  # serve creates and migrates it


def test_every_format_and_a_url_then_sigterm_mid_job_and_a_restart_finds_them_all(
    db_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    # a grace period shorter than the long job: on SIGTERM its worker must hand it back
    env = {"CESAR_SHUTDOWN_GRACE_SECONDS": "0.2"}
    with (
        serving_directory(AUDIO_DIR) as audio_url,
        running_serve(db_url, log_path=log, workers="2", env=env) as serve,
    ):
        assert "Starting 2 workers x 1 thread, cpu int8, tiny.en" in serve.log()
        # serve says so once its own poll finds the API listening, which may come after /health answers us
        ready = f"Cesar API on {serve.url} (docs: {serve.url}/docs)"
        wait_for(lambda: ready in serve.log(), timeout=10, what="serve to announce the API")
        client = Client(serve.url)
        ids = {name: client.upload(AUDIO_DIR / name) for name in SPEECH_FILES}
        ids["url"] = client.submit_url(f"{audio_url}/speech_en.mp3")
        jobs = client.wait_all(ids.values())
        for name, job_id in ids.items():
            assert jobs[job_id]["status"] == "completed", (name, jobs[job_id])
            assert_words(jobs[job_id]["result_text"], SPEECH_WORDS)

        # sequential (VAD off): it stops between 30 s windows, where a batched job stops only once its batch
        # (here the whole file, up to 10 s of CPU on a busy machine) is done, which may outlast the
        # supervisor's margin of 10 s after the grace period
        long_id = client.upload(AUDIO_DIR / "speech_en_long.flac", vad="false")
        client.wait_status(long_id, {"processing"})
        client.close()
        assert serve.stop(signal.SIGTERM) == 0
    assert serve.leftovers() == []
    assert "handed back" in serve.log()

    # issue 7: both workers of the SQLite set-up took jobs
    assert len(worker_ids(db_url, list(ids.values())) - {None}) == 2

    with running_serve(db_url, log_path=log, workers="auto") as again:
        client = Client(again.url)
        job = client.wait_all([long_id], timeout=60)[long_id]
        assert job["status"] == "completed", job
        assert_words(job["result_text"], LONG_WORDS)
        # issue 7: the job says how it ran; auto batches on CPU, short files too (issue 13), not without VAD
        assert job["decoding"]["mode"] == "sequential" and job["decoding"]["batch_size"] == 1, job
        assert (job["decoding"]["device"], job["decoding"]["compute_type"]) == ("cpu", "int8")
        short = [client.job(job_id)["decoding"] for job_id in ids.values()]
        assert {decoding["mode"] for decoding in short} == {"batched"}
        assert all(decoding["batch_size"] > 1 for decoding in short)
        listed = {job["id"] for job in client.http.get("/jobs").json()}
        assert listed == {*ids.values(), long_id}
        for job_id in ids.values():
            assert client.job(job_id)["status"] == "completed"
            assert_words(client.transcript(job_id), SPEECH_WORDS)
        client.close()


def test_a_worker_killed_with_kill_9_is_restarted_then_serve_killed_with_kill_9_leaves_no_orphans(
    db_url: str, tmp_path: Path
) -> None:
    with running_serve(db_url, log_path=tmp_path / "serve.log", workers="1") as serve:
        client = Client(serve.url)
        job_id = client.upload(AUDIO_DIR / "speech_en_long.flac")
        client.wait_status(job_id, {"processing"})
        [victim] = serve.workers()
        victim.kill()

        def replaced() -> bool:
            workers = serve.workers()
            return len(workers) == 1 and workers[0].pid != victim.pid

        wait_for(replaced, timeout=15, what="a new worker")
        assert f"worker-1 (pid {victim.pid}) was killed by SIGKILL" in serve.log()
        job = client.wait_all([job_id], timeout=60)[job_id]
        assert job["status"] == "completed", job
        assert job["attempts"] == 2  # the lost attempt counts: its lease ran out
        assert_words(job["result_text"], LONG_WORDS)
        client.close()

        children = serve.children()
        assert len(children) == 2  # the API and the new worker
        serve.stop(signal.SIGKILL)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"orphans: {alive}"
        assert serve.leftovers() == []


def test_a_port_in_use_is_one_line_and_a_non_zero_exit(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [CESAR, "serve", "--port", str(port), "--db", db_url],
            capture_output=True,
            text=True,
            env=cesar_env(),
            timeout=60,
        )
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr == f"error: port {port} is in use: pass --port\n"


def test_workers_0_runs_the_api_alone(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    with running_serve(db_url, log_path=tmp_path / "serve.log", workers="0", port=port) as serve:
        health = Client(serve.url).http.get("/health").json()
        assert health["workers"]["count"] == 0
        assert [child.cmdline()[-1] for child in serve.children()] == ["cesar_api"]
        assert "Starting the API alone (--workers 0)" in serve.log()

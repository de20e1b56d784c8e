"""The object store from the command line, as real processes: `cesar worker` and `cesar api` refuse in one
line to start against an object store that refuses them, before taking any work; `cesar db move` moves stored
audio into the object store and back, and says in one line what it cannot do."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from cesar_common.blob_store import BlobStore
from cesar_common.db.records import JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.db.tables import job_audio

CESAR = [sys.executable, "-m", "cesar"]


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CESAR_", "AWS_"))}
    return subprocess.run(
        [*CESAR, *args], env={**clean, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_refusing_object_store_stops_the_worker_and_the_api_before_work(
    sqlite_url: str, seaweed, s3_bucket: str
) -> None:  # type: ignore[no-untyped-def]
    env = {
        "CESAR_DATABASE_URL": sqlite_url,
        "CESAR_BLOB_URL": f"s3://{s3_bucket}/cesar",
        **seaweed.env(),
        "AWS_SECRET_ACCESS_KEY": "wrong",
    }
    assert "refused Cesar's credentials" in _one_line(_run(["worker", "--once"], env))
    missing = {**env, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key, "CESAR_BLOB_URL": "s3://no-such-bucket-x"}
    assert "does not exist" in _one_line(_run(["api", "--port", "0"], missing))
    bad_url = {**missing, "CESAR_BLOB_URL": "http://bucket"}
    assert "CESAR_BLOB_URL must look like s3://bucket" in _one_line(_run(["worker", "--once"], bad_url))


def test_cesar_db_move_moves_stored_audio_there_and_back(
    sqlite_url: str, seaweed, s3_bucket: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    plain = JobStore.from_url(sqlite_url)
    audio = [os.urandom(size) for size in (10, 3 * 1024 * 1024 + 1, 2000)]
    new = NewJob(source=JobSource.UPLOAD, options=TranscribeOptions(model="tiny.en"), filename="a.wav")
    ids = [plain.create_job(new, io.BytesIO(data)).id for data in audio]
    env = {"CESAR_DATABASE_URL": sqlite_url}
    said = _one_line(_run(["db", "move", "--to", "objects"], env))
    assert "CESAR_BLOB_URL is not set" in said

    env = {**env, "CESAR_BLOB_URL": f"s3://{s3_bucket}/moved", **seaweed.env()}
    done = _run(["db", "move", "--to", "objects", "--batch", "2"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"moved the audio of 3 jobs (3.0 MiB) into s3://{s3_bucket}/moved")

    def bytes_in_rows() -> int:
        with plain.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.sum(func.length(job_audio.c.data)), 0))).scalar_one()
            )

    assert bytes_in_rows() == 0
    blobs = BlobStore(
        f"s3://{s3_bucket}/moved",
        endpoint_url=seaweed.endpoint,
        access_key_id=seaweed.access_key,
        secret_access_key=seaweed.secret_key,
    )
    reader = JobStore.from_url(sqlite_url, blobs=blobs)
    assert [b"".join(reader.iter_audio(job_id)) for job_id in ids] == audio
    assert _run(["db", "move", "--to", "objects"], env).stdout.startswith("moved the audio of 0 jobs")

    back = _run(["db", "move", "--to", "database"], env)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith("moved the audio of 3 jobs (3.0 MiB) into sqlite:")
    assert bytes_in_rows() == sum(map(len, audio))
    assert [b"".join(plain.iter_audio(job_id)) for job_id in ids] == audio
    reader.close()
    plain.close()
    blobs.close()

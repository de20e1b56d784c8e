"""A full disk (SQLite's own "database or disk is full", by capping the file's pages) is survivable: the
upload fails with a 503 and /health says writes fail; once space returns, /health recovers by itself, the
interrupted upload is cleaned up, and uploads work again. And a SQLite file deleted under a running API is
noticed instead of written into."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from api_helpers import AUDIO_DIR, error_body, health_when, running_api, url_job
from sqlalchemy import event, func, select

from cesar_common.db.tables import Job, JobAudio


def capped(engine: Any, pages: int) -> Any:
    """Every new connection of ``engine`` may grow the file to ``pages`` pages (its pool is emptied)."""

    def cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    engine.dispose()
    event.listen(engine, "connect", cap)
    return cap


def test_a_full_disk_fails_uploads_clearly_and_recovers_by_itself(sqlite_url: str) -> None:
    with running_api(sqlite_url) as api:
        engine = api.store.engine
        with engine.connect() as conn:
            used = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
        cap = capped(engine, used + 40)  # about 160 KB left: the 1.2 MB file cannot fit
        with (AUDIO_DIR / "speech_en_long.flac").open("rb") as audio:
            full = api.client.post("/transcribe", files={"file": ("long.flac", audio, "audio/flac")})
        body = error_body(full, 503)
        assert body["code"] == "database_unavailable"
        assert "full" not in body["detail"]  # the driver's words stay in the log
        health = api.client.get("/health")
        assert health.status_code == 503, health.text
        assert health.json()["database"] == {
            "reachable": True,
            "writable": False,
            "backend": "sqlite",
            "error": "writes_failing",
        }

        event.remove(engine, "connect", cap)  # space returns
        engine.dispose()
        health_when(api, lambda r: r.status_code == 200)  # without waiting for the next job
        api.store.purge_stale_uploads(older_than_seconds=0)  # what a worker's housekeeping does
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(JobAudio)).scalar_one() == 0
            assert conn.execute(select(func.count()).where(Job.status == "pending")).scalar_one() == 0
        with (AUDIO_DIR / "speech_en_long.flac").open("rb") as audio:
            again = api.client.post("/transcribe", files={"file": ("long.flac", audio, "audio/flac")})
        assert again.status_code == 202, again.text


def test_a_deleted_sqlite_file_is_noticed(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    with running_api(sqlite_url) as api:
        job = url_job(api.store)
        assert api.client.get("/health").status_code == 200
        assert api.client.get(f"/jobs/{job.id}").status_code == 200  # the polled read, on its own connection
        os.remove(path)
        health_when(api, lambda r: r.status_code == 503)
        # a lone read may see the unlinked file a moment longer (db/connect.py: READ_CHECK_SECONDS)
        deadline = time.monotonic() + 30
        while (
            polled := api.client.get(f"/jobs/{job.id}")
        ).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        error_body(polled, 503)
        with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
            refused = api.client.post("/transcribe", files={"file": ("a.wav", audio, "audio/wav")})
        error_body(refused, 503)
        refused = api.client.post("/transcribe", json={"url": "https://93.184.215.14/a.mp3"})
        error_body(refused, 503)
    assert not path.exists()  # nothing recreated it, empty and without a schema

"""The least an API can do for ``GET /jobs/{id}``: a Litestar app that reads the job's row with ``sqlite3``
and returns the same JSON Cesar does, with none of Cesar's layers (store, records, schemas, auth, metrics).

``bench/api_load.py`` runs it beside ``python -m cesar_api`` on the same database: the ratio says what
Cesar's layers cost on its hottest path. Run as ``python bench/minimal_api.py DB_PATH PORT``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from typing import Any

import uvicorn
from litestar import Litestar, Response, get

_local = threading.local()
DB_PATH = ""


def connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        _local.conn = conn
    return conn


def iso(stamp: str | None) -> str | None:
    return None if stamp is None else stamp.replace(" ", "T") + "Z"


@get("/jobs/{job_id:str}", sync_to_thread=False)
def get_job(job_id: str) -> Response[bytes]:
    row = (
        connection().execute("SELECT * FROM jobs WHERE id = ? AND status != 'pending'", (job_id,)).fetchone()
    )
    if row is None:
        return Response(b'{"status_code":404}', status_code=404, media_type="application/json")
    position = None
    if row["status"] == "queued":
        position = (
            connection()
            .execute(
                "SELECT count(*) FROM jobs WHERE status = 'queued'"
                " AND (created_at < ? OR (created_at = ? AND id <= ?))",
                (row["created_at"], row["created_at"], row["id"]),
            )
            .fetchone()[0]
        )
    body: dict[str, Any] = {
        "id": row["id"],
        "status": row["status"],
        "audio_path": row["source_url"] if row["source"] == "url" else row["filename"],
        "model_size": row["model"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]),
        "result_text": row["result_text"],
        "detected_language": row["detected_language"],
        "error_message": row["error_message"],
        "model": row["model"],
        "progress": row["progress"],
        "queue_position": position,
        "duration": row["duration"],
        "language_probability": row["language_probability"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "error_code": row["error_code"],
        "source": row["source"],
        "cancel_requested": bool(row["cancel_requested"]),
        "size_bytes": row["size_bytes"],
        "options": {
            "language": row["language"],
            "task": row["task"],
            "word_timestamps": bool(row["word_timestamps"]),
            "vad": bool(row["vad"]),
            "initial_prompt": row["initial_prompt"],
        },
        "links": {
            "self": f"/jobs/{row['id']}",
            "cancel": f"/jobs/{row['id']}/cancel",
            "transcripts": None,
        },
        "webhook": None,
        "decoding": None,
        "segment_count": row["segment_count"],
    }
    return Response(json.dumps(body).encode(), media_type="application/json")


if __name__ == "__main__":
    DB_PATH, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(Litestar([get_job]), host="127.0.0.1", port=port, log_level="warning", access_log=False)

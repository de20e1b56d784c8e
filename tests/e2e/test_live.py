"""Live sessions over real WebSockets against a real `cesar serve` (real Whisper), on SQLite and PostgreSQL.

The story (70 s) is sent at speaking pace; in the middle the worker holding the session is killed with
kill -9 (another worker takes the session over from the stored audio and the confirmed segments) and later
the API is killed with kill -9 (the supervisor starts it again; the client resumes with the session id and
its last segment, and sends again from what the server has). Confirmed segments arrive while the audio is
still being sent, each once and in order, and the final transcript is as good as the file's.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import wer
from dbtools import migrate
from httpx_sse import connect_sse
from live_support import BYTES_PER_SECOND, LiveSession, pcm_of, ws_url
from psycopg import sql
from serve_helpers import AUDIO_DIR, Client, running_serve, wait_for

from cesar_common.db.connect import normalize_url
from cesar_common.db.store import JobStore

LONG = AUDIO_DIR / "speech_en_long.flac"
REFERENCE = wer.reference_from_readme((AUDIO_DIR / "README.md").read_text(), "speech_en_long")

pytestmark = pytest.mark.timeout(600)


def test_the_story_at_speaking_pace_survives_a_killed_worker_and_a_restarted_api(tmp_path: Path) -> None:
    story_through_faults(f"sqlite:///{tmp_path / 'cesar.db'}", tmp_path)


@contextlib.contextmanager
def postgres_schema(server_url: str) -> Iterator[str]:
    """A database URL on a schema of its own, at head; the schema is dropped on the way out."""
    server = normalize_url(server_url)
    schema = f"cesar_live_{uuid.uuid4().hex[:12]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def story_through_faults(db: str, tmp_path: Path, *, seconds: int | None = None) -> None:
    """The story at speaking pace through a worker killed with kill -9 and an API killed the same way, a
    third and two thirds of the way (also run on PostgreSQL, by test_live_postgres.py: a file of its own,
    so that the two run at once). With ``seconds``, only the story's first seconds, and no comparison with
    the whole file's transcript."""
    pcm = pcm_of(LONG)
    if seconds is not None:
        pcm = pcm[: seconds * BYTES_PER_SECOND]
    length = len(pcm) // BYTES_PER_SECOND
    with running_serve(db, log_path=tmp_path / "serve.log", workers="2") as serve:
        session = LiveSession(ws_url(serve.url))
        answer = session.start(model="tiny.en", language="en")
        assert answer["type"] == "session", answer
        job_id = answer["session_id"]
        client = Client(serve.url)

        # a third of the story, then the worker that holds the session dies
        session.send_audio(pcm, until=length * 22 // 70 * BYTES_PER_SECOND)
        victim = _worker_holding(job_id, db)
        victim.kill()
        session.send_audio(pcm, until=length * 45 // 70 * BYTES_PER_SECOND)
        # then the API dies: the supervisor starts it again, the client resumes
        api = serve.api()
        assert api is not None
        api.kill()
        session.send_audio(pcm)
        stopped_at = len(pcm) / BYTES_PER_SECOND
        session.stop()
        final = session.wait_final(timeout=180)["job"]

        assert final["status"] == "completed", final
        assert final["source"] == "live"
        assert final["attempts"] >= 2, "another worker took the session over"
        assert session.resumes >= 1, "the client resumed after the API restart"
        assert final["duration"] == pytest.approx(len(pcm) / BYTES_PER_SECOND, abs=0.2)

        segments = session.segments()
        assert [segment["id"] for segment in segments] == list(range(len(segments))), "each once, in order"
        starts = [segment["start"] for segment in segments]
        assert starts == sorted(starts)
        early = [event for event in session.of_type("segment") if event.sent_seconds < stopped_at]
        assert len(early) >= len(segments) // 2, "confirmed while the audio was still being sent"
        first = session.of_type("segment")[0]
        assert first.sent_seconds - first.data["end"] < 10, "the first segment within seconds of its words"
        assert session.of_type("tentative"), "tentative text while the words are spoken"
        assert session.closes[-1][0] == 1000

        # the job's own event stream tells the same segments, once each, through both takeovers
        with (
            httpx.Client(base_url=serve.url, timeout=30) as http,
            connect_sse(http, "GET", f"/jobs/{job_id}/events") as source,
        ):
            followed = [json.loads(sse.data) for sse in source.iter_sse() if sse.event == "segment"]
        assert [(s["id"], s["text"]) for s in followed] == [(s["id"], s["text"]) for s in segments]

        if seconds is not None:
            client.close()
            return
        live_text = client.transcript(job_id, "txt")
        live_wer = wer.word_error_rate(REFERENCE, live_text)
        file_job = client.upload(LONG)
        client.wait_all([file_job], timeout=180)
        file_wer = wer.word_error_rate(REFERENCE, client.transcript(file_job, "txt"))
        assert live_wer <= 0.20, (live_wer, live_text)
        assert live_wer <= file_wer + 0.05, (live_wer, file_wer)
        client.close()


def _worker_holding(job_id: str, db: str) -> psutil.Process:
    """The worker process holding the session (its worker id is ``host:pid``)."""
    store = JobStore.from_url(db)
    try:
        worker_id = wait_for(lambda: store.get_job(job_id).worker_id, timeout=30, what="the session's worker")
    finally:
        store.close()
    return psutil.Process(int(str(worker_id).rsplit(":", 1)[1]))

"""A live session's first message takes a job's speaker options (``diarize`` and the counts) and checks them
as every other door does; speakers are found by the final pass, so a server without one refuses them.

No worker runs here: a session that passes the checks is made, then refused with ``no_worker``."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from cesar_api.app import create_app
from cesar_common.db.records import JobSource
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings


def first_answer(db_url: str, start: dict[str, Any], **settings: Any) -> dict[str, Any]:
    app = create_app(Settings(database_url=db_url, live_start_seconds=0.1, **settings))
    with TestClient(app) as client, client.websocket_connect("/live") as socket:
        socket.send_json({"type": "start", **start})
        answer: dict[str, Any] = socket.receive_json()
    return answer


def test_a_live_session_takes_the_speaker_options(sqlite_url: str) -> None:
    answer = first_answer(sqlite_url, {"diarize": True, "min_speakers": 2, "max_speakers": 3})
    assert answer["code"] == "no_worker", answer
    store = JobStore.from_url(sqlite_url)
    try:
        (session,) = store.list_jobs(limit=10).jobs
    finally:
        store.close()
    assert session.source is JobSource.LIVE
    assert (session.options.diarize, session.options.min_speakers, session.options.max_speakers) == (
        True,
        2,
        3,
    )


def test_speaker_counts_are_checked_as_for_a_file(sqlite_url: str) -> None:
    answer = first_answer(sqlite_url, {"diarize": True, "num_speakers": 4, "max_speakers": 2})
    assert answer == {
        "type": "error",
        "code": "invalid_input",
        "message": "speaker counts that contradict each other: num_speakers=4 is more than max_speakers=2",
    }
    assert first_answer(sqlite_url, {"num_speakers": 0})["code"] == "invalid_message"


def test_without_a_final_pass_speakers_are_refused(sqlite_url: str) -> None:
    answer = first_answer(sqlite_url, {"diarize": True}, live_final_pass=False)
    assert answer["code"] == "invalid_input"
    assert "CESAR_LIVE_FINAL_PASS" in answer["message"] and "without diarize" in answer["message"]
    assert first_answer(sqlite_url, {}, live_final_pass=False)["code"] == "no_worker"

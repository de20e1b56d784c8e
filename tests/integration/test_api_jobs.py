"""Following jobs over HTTP: get, list and pages, transcripts, cancel, delete (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime
from io import StringIO

import pytest
import srt
import webvtt
from api_helpers import (
    SEGMENTS,
    Api,
    completed_job,
    error_body,
    job_count,
    processing_job,
    running_api,
    upload,
    url_job,
)

from cesar_common.db.records import JobStatus

#: the job fields of the first Cesar API (v2.0), which clients still read
FIRST_API_FIELDS = {
    "id",
    "status",
    "audio_path",
    "model_size",
    "created_at",
    "started_at",
    "completed_at",
    "result_text",
    "detected_language",
    "error_message",
}
NEW_FIELDS = {
    "model",
    "progress",
    "queue_position",
    "duration",
    "language_probability",
    "attempts",
    "error_code",
    "source",
    "links",
}


def aware(stamp: str | None) -> datetime | None:
    """An ISO 8601 timestamp that must carry a zone."""
    if stamp is None:
        return None
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None, stamp
    return parsed


def test_a_queued_upload_has_the_first_api_fields(api: Api) -> None:
    submitted = upload(api).json()
    job = api.client.get(f"/jobs/{submitted['id']}").json()
    assert set(job) >= FIRST_API_FIELDS | NEW_FIELDS
    assert job["status"] == "queued"
    assert job["audio_path"] == "speech_en.wav"
    assert job["model_size"] == job["model"] == "tiny.en"
    assert aware(job["created_at"]) is not None
    assert job["started_at"] is job["completed_at"] is job["result_text"] is None
    assert job["detected_language"] is job["error_message"] is job["error_code"] is None
    assert job["progress"] == 0.0
    assert job["attempts"] == 0
    assert job["queue_position"] >= 1
    assert job["links"]["self"] == f"/jobs/{job['id']}"
    assert job["links"]["transcripts"] is None


def test_a_completed_job_has_its_result_and_transcript_links(api: Api) -> None:
    done = completed_job(api.store)
    job = api.client.get(f"/jobs/{done.id}").json()
    assert job["status"] == "completed"
    assert job["result_text"].startswith("The quick brown fox")
    assert job["detected_language"] == "en"
    assert job["language_probability"] == pytest.approx(0.97)
    assert job["duration"] == pytest.approx(7.2)
    assert job["progress"] == 1.0
    assert job["attempts"] == 1
    assert job["queue_position"] is None
    assert job["decoding"] == {
        "device": "cpu",
        "compute_type": "int8",
        "mode": "batched",
        "batch_size": 4,
        "parts": 1,
        "workers": 1,
    }
    created, started, completed = (aware(job[key]) for key in ("created_at", "started_at", "completed_at"))
    assert created and started and completed and created <= started <= completed
    links = job["links"]["transcripts"]
    assert set(links) == {"txt", "srt", "vtt", "json", "tsv"}  # rttm only with diarize
    assert api.client.get(links["srt"]).status_code == 200


def test_a_failed_job_has_its_error(api: Api) -> None:
    job = processing_job(api.store)
    api.store.fail_job(job.id, "test-worker", code="decode_failed", message="speech.mp3: no audio")
    body = api.client.get(f"/jobs/{job.id}").json()
    assert body["status"] == "error"
    assert body["error_code"] == "decode_failed"
    assert body["error_message"] == "speech.mp3: no audio"
    assert body["decoding"] is None


def test_unknown_job_is_404(api: Api) -> None:
    for request in (
        api.client.get("/jobs/no-such-job"),
        api.client.get("/jobs/no-such-job/transcript"),
        api.client.post("/jobs/no-such-job/cancel"),
        api.client.delete("/jobs/no-such-job"),
    ):
        assert error_body(request, 404)["code"] == "not_found"


def test_list_pages_through_every_job_newest_first(api: Api) -> None:
    made = {url_job(api.store).id for _ in range(23)}
    total = job_count(api.store)
    seen: list[dict[str, object]] = []
    pages = 0
    response = api.client.get("/jobs", params={"limit": 10})
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list) and len(page) <= 10
        seen.extend(page)
        pages += 1
        link = response.headers.get("link")
        if link is None:
            assert "x-next-cursor" not in response.headers
            break
        url, rel = link.split(";")
        assert rel.strip() == 'rel="next"'
        next_url = url.strip()[1:-1]
        assert next_url.startswith(api.url + "/jobs?")
        assert f"cursor={response.headers['x-next-cursor']}" in next_url
        response = api.client.get(next_url)
    ids = [job["id"] for job in seen]
    assert len(ids) == len(set(ids)) == total
    assert pages == -(-total // 10) >= 3
    assert made <= set(ids)
    keys = [(aware(str(job["created_at"])), job["id"]) for job in seen]
    assert keys == sorted(keys, reverse=True)


def test_list_filters_by_status_and_counts_the_queue(api: Api) -> None:
    done = completed_job(api.store)
    queued = [url_job(api.store) for _ in range(3)]
    completed = api.client.get("/jobs", params={"status": "completed", "limit": 1000}).json()
    assert done.id in {job["id"] for job in completed}
    assert {job["status"] for job in completed} == {"completed"}

    listed = api.client.get("/jobs", params={"status": "queued", "limit": 1000}).json()
    assert {job["status"] for job in listed} == {"queued"}
    # newest first, so the queue positions count down to 1, matching GET /jobs/{id}
    positions = [job["queue_position"] for job in listed]
    assert positions == list(range(len(listed), 0, -1))
    for job in queued:
        single = api.client.get(f"/jobs/{job.id}").json()
        assert single["queue_position"] == next(x for x in listed if x["id"] == job.id)["queue_position"]
    # unfiltered pages carry the same positions
    everything = api.client.get("/jobs", params={"limit": 1000}).json()
    assert [job["queue_position"] for job in everything if job["status"] == "queued"] == positions


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"status": "pending"}, 400),
        ({"status": "done"}, 400),
        ({"limit": 0}, 400),
        ({"limit": 1001}, 400),
        ({"limit": "ten"}, 400),
        ({"cursor": "not-a-cursor"}, 422),
    ],
)
def test_bad_list_parameters(api: Api, params: dict[str, object], status: int) -> None:
    body = error_body(api.client.get("/jobs", params=params), status)
    assert next(iter(params)) in body["detail"]


def test_list_limit_defaults_to_100_and_goes_to_1000(api: Api) -> None:
    while job_count(api.store) < 105:
        url_job(api.store)
    assert len(api.client.get("/jobs").json()) == 100
    assert len(api.client.get("/jobs", params={"limit": 1000}).json()) == min(job_count(api.store), 1000)


def test_transcripts_in_every_format(api: Api) -> None:
    job = completed_job(api.store)
    base = f"/jobs/{job.id}/transcript"

    txt = api.client.get(base)  # txt is the default
    assert txt.headers["content-type"] == "text/plain; charset=utf-8"  # said once
    assert txt.text.splitlines() == [segment["text"].strip() for segment in SEGMENTS]

    response = api.client.get(base, params={"format": "srt"})
    assert response.headers["content-type"].startswith("application/x-subrip")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["content-disposition"].endswith('.srt"')
    cues = list(srt.parse(response.text))
    assert [cue.content for cue in cues] == [segment["text"].strip() for segment in SEGMENTS]
    assert [cue.start.total_seconds() for cue in cues] == [segment["start"] for segment in SEGMENTS]
    assert [cue.end.total_seconds() for cue in cues] == [segment["end"] for segment in SEGMENTS]

    response = api.client.get(base, params={"format": "vtt"})
    assert response.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_buffer(StringIO(response.text))
    assert [caption.text for caption in captions] == [segment["text"].strip() for segment in SEGMENTS]
    assert [caption.start_in_seconds for caption in captions] == [int(s["start"]) for s in SEGMENTS]
    assert captions[1].start == "00:00:03.400" and captions[1].end == "00:00:07.100"

    response = api.client.get(base, params={"format": "json"})
    assert response.headers["content-type"].startswith("application/json")
    data = json.loads(response.text)
    assert data["language"] == "en"
    assert [segment["text"] for segment in data["segments"]] == [s["text"] for s in SEGMENTS]
    assert (data["model"], data["device"], data["mode"], data["batch_size"]) == (
        "tiny.en",
        "cpu",
        "batched",
        4,
    )

    response = api.client.get(base, params={"format": "tsv"})
    assert response.headers["content-type"].startswith("text/tab-separated-values")
    rows = [line.split("\t") for line in response.text.splitlines()]
    assert rows[0] == ["start", "end", "text"]
    assert rows[2][:2] == ["3400", "7100"]

    body = error_body(api.client.get(base, params={"format": "docx"}), 400)
    assert "invalid query parameter 'format'" in body["detail"] and "fmt" not in body["detail"]


def test_an_upload_transcript_is_named_after_the_file(api: Api) -> None:
    job = completed_job(api.store)
    # the helper's job is a URL job: it gets a name from its id
    response = api.client.get(f"/jobs/{job.id}/transcript", params={"format": "vtt"})
    assert response.headers["content-disposition"] == f'attachment; filename="transcript-{job.id}.vtt"'


def test_no_transcript_before_completion(api: Api) -> None:
    queued = url_job(api.store)
    body = error_body(api.client.get(f"/jobs/{queued.id}/transcript"), 409)
    assert body["code"] == "conflict"
    assert body["detail"] == f"job {queued.id} is queued: its transcript exists once it is completed"
    api.store.request_cancel(queued.id)
    body = error_body(api.client.get(f"/jobs/{queued.id}/transcript"), 409)
    assert body["detail"] == f"job {queued.id} is cancelled: it has no transcript"


def test_the_root_is_the_web_page_with_a_strict_policy(api: Api) -> None:
    response = api.client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert '<script src="/ui/cesar.js" defer>' in response.text
    script = api.client.get("/ui/cesar.js")
    assert script.status_code == 200 and "content-security-policy" in script.headers
    config = api.client.get("/ui/config").json()
    assert config["models"][0] == "tiny.en" and config["languages"]["en"] == "english"


def test_metrics_say_their_charset_once(api: Api) -> None:
    content_type = api.client.get("/metrics").headers["content-type"]
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_cancel_a_queued_job(api: Api) -> None:
    job = upload(api).json()
    response = api.client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["queue_position"] is None
    assert aware(body["completed_at"]) is not None
    assert api.store.get_job(job["id"]).status is JobStatus.CANCELLED
    # once ended, it cannot be cancelled again
    assert error_body(api.client.post(f"/jobs/{job['id']}/cancel"), 409)["code"] == "conflict"


def test_cancel_a_running_job_asks_its_worker(api: Api) -> None:
    job = processing_job(api.store)
    response = api.client.post(f"/jobs/{job.id}/cancel")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "processing"
    assert body["cancel_requested"] is True
    assert api.store.is_cancel_requested(job.id)
    # the worker stops between segments and ends it
    assert api.store.cancel_running(job.id, "test-worker")
    assert api.client.get(f"/jobs/{job.id}").json()["status"] == "cancelled"


def test_cancel_a_finished_job_is_409(api: Api) -> None:
    job = completed_job(api.store)
    body = error_body(api.client.post(f"/jobs/{job.id}/cancel"), 409)
    assert "completed" in body["detail"]


def test_delete_a_finished_job(api: Api) -> None:
    done = completed_job(api.store)
    response = api.client.delete(f"/jobs/{done.id}")
    assert response.status_code == 204
    assert response.content == b""
    assert error_body(api.client.get(f"/jobs/{done.id}"), 404)
    assert error_body(api.client.delete(f"/jobs/{done.id}"), 404)


def test_delete_removes_the_audio_too(api: Api) -> None:
    job = upload(api).json()
    assert api.store.audio_size(job["id"]) > 0
    assert api.client.post(f"/jobs/{job['id']}/cancel").status_code == 202
    assert api.client.delete(f"/jobs/{job['id']}").status_code == 204
    with pytest.raises(Exception, match="no job"):
        api.store.audio_size(job["id"])


def test_delete_refuses_queued_and_processing_jobs(api: Api) -> None:
    queued = url_job(api.store)
    body = error_body(api.client.delete(f"/jobs/{queued.id}"), 409)
    assert "queued" in body["detail"]
    running = processing_job(api.store)
    body = error_body(api.client.delete(f"/jobs/{running.id}"), 409)
    assert "processing" in body["detail"]
    assert api.client.get(f"/jobs/{running.id}").status_code == 200


def test_a_second_api_on_the_same_database_sees_the_same_jobs(api: Api, api_db: str) -> None:
    """The database is all the API instances share: any of them answers for any job."""
    job = upload(api).json()
    with running_api(api_db) as other:
        assert other.client.get(f"/jobs/{job['id']}").json()["id"] == job["id"]

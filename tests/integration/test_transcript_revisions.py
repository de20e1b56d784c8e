"""Correcting transcripts over HTTP, on SQLite and PostgreSQL: ``PATCH /jobs/{id}/transcript`` makes revisions
that every format serves (the machine's kept for ``?revision=original``), two editors of one revision never
both win, jobs not completed are refused, an edit reaches followers of the job's events and its webhook, a
renamed voice can be remembered; and once, a transcript the real engine wrote is corrected."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import AUDIO_DIR, DECODING, PUBLIC_URL, Api, error_body
from webhook_support import webhook_receiver

from cesar_common.db import revisions
from cesar_common.db.records import (
    JobRecord,
    JobResult,
    JobSource,
    JobStatus,
    NewJob,
    TranscribeOptions,
    WebhookState,
)
from cesar_common.db.store import JobStore
from cesar_common.settings import Settings
from cesar_common.transcript_edits import Transcript
from cesar_worker import speaker_names
from cesar_worker.webhook_sender import WebhookSender


def word(start: float, end: float, text: str) -> dict[str, Any]:
    return {"start": start, "end": end, "word": text, "probability": 0.9}


def said(number: int, speaker: str, words: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": number,
        "start": words[0]["start"],
        "end": words[-1]["end"],
        "text": "".join(w["word"] for w in words).strip(),
        "speaker": speaker,
        "words": [{**w, "speaker": speaker} for w in words],
    }


SEGMENTS = [
    said(0, "SPEAKER_00", [word(0.0, 0.4, " Hello"), word(0.5, 0.9, " there,"), word(1.0, 1.5, " Diane.")]),
    said(1, "SPEAKER_01", [word(2.0, 2.3, " The"), word(2.4, 2.8, " cat"), word(2.9, 3.3, " sat.")]),
    said(2, "SPEAKER_00", [word(4.0, 4.5, " Good"), word(4.6, 5.0, " dog.")]),
]
MACHINE_TEXT = "Hello there, Diane. The cat sat. Good dog."


def _voice(seed: int) -> list[float]:
    import numpy as np

    vector = np.random.default_rng(seed).normal(size=256)
    return [float(value) for value in vector / np.linalg.norm(vector)]


def claimed(store: JobStore, *, callback_url: str | None = None, diarize: bool = True) -> JobRecord:
    """A job held by a worker (the only one: other queued jobs are cancelled)."""
    for queued in store.list_jobs(status=JobStatus.QUEUED, limit=1000).jobs:
        store.request_cancel(queued.id)
    new = NewJob(
        source=JobSource.URL,
        options=TranscribeOptions(model="tiny.en", diarize=diarize, word_timestamps=True),
        source_url=PUBLIC_URL,
        callback_url=callback_url,
    )
    job = store.create_job(new, None)
    got = store.claim_work("test-worker", lease_seconds=60)
    assert isinstance(got, JobRecord) and got.id == job.id
    return got


def finished(store: JobStore, *, callback_url: str | None = None, result: JobResult | None = None) -> str:
    """A completed diarized job as the worker leaves one (its voices kept, its speakers listed by label)."""
    job = claimed(store, callback_url=callback_url)
    result = result or JobResult(
        text=MACHINE_TEXT,
        language="en",
        language_probability=0.99,
        duration=5.0,
        segments=SEGMENTS,
        decoding=DECODING,
        speakers=[{"speaker": "SPEAKER_00", "duration": 2.5}, {"speaker": "SPEAKER_01", "duration": 1.3}],
        voices={"SPEAKER_00": _voice(1), "SPEAKER_01": _voice(2)},
    )
    assert store.complete_job(job.id, "test-worker", speaker_names.named(store, job, result))
    return job.id


def patch(api: Api, job_id: str, revision: int, *edits: dict[str, Any], **body: Any) -> httpx.Response:
    return api.client.patch(
        f"/jobs/{job_id}/transcript", json={"revision": revision, "edits": list(edits), **body}
    )


def transcript(api: Api, job_id: str, fmt: str, **params: str) -> httpx.Response:
    answer = api.client.get(f"/jobs/{job_id}/transcript", params={"format": fmt, **params})
    assert answer.status_code == 200, answer.text
    return answer


# --- edits and what serves them ----------------------------------------------------------------------
def test_an_edit_is_a_revision_every_format_serves_and_the_machine_s_stays(api: Api) -> None:
    job_id = finished(api.store)
    edited = patch(
        api,
        job_id,
        0,
        {"op": "rename", "speaker": "SPEAKER_00", "to": "Diane Smith"},
        {"op": "text", "segment": 1, "text": "The dog sat."},
        author="sheila",
    )
    assert edited.status_code == 200, edited.text
    assert edited.headers["x-transcript-revision"] == "1"
    body = edited.json()
    assert body["revision"] == 1 and body["text"] == "Hello there, Diane. The dog sat. Good dog."
    changed = body["segments"][1]
    assert changed["edited"] is True and changed["text"] == "The dog sat."
    assert [(w["word"], w["start"]) for w in changed["words"]] == [(" The", 2.0), (" sat.", 2.9)]
    assert body["segments"][0]["speaker"] == "Diane Smith"

    job = api.client.get(f"/jobs/{job_id}").json()
    assert job["revision"] == 1 and job["result_text"] == body["text"]
    assert [(s["speaker"], s["label"]) for s in job["speakers"]] == [
        ("Diane Smith", "SPEAKER_00"),
        ("SPEAKER_01", "SPEAKER_01"),
    ]
    latest = {fmt: transcript(api, job_id, fmt) for fmt in ("txt", "srt", "vtt", "json", "tsv", "rttm")}
    for fmt, answer in latest.items():
        assert answer.headers["x-transcript-revision"] == "1", fmt
        if fmt != "rttm":
            assert "The dog sat." in answer.text, fmt
    assert "Diane Smith: Hello there, Diane." in latest["srt"].text
    assert "<v Diane Smith>" in latest["vtt"].text
    assert " Diane_Smith " in latest["rttm"].text
    assert json.loads(latest["json"].text)["segments"] == body["segments"]

    for original in ("original", "0"):
        machine = transcript(api, job_id, "json", revision=original)
        assert machine.headers["x-transcript-revision"] == "0"
        assert [s["text"] for s in machine.json()["segments"]] == [s["text"] for s in SEGMENTS]
        assert machine.json()["segments"][1]["words"] == SEGMENTS[1]["words"]
    assert transcript(api, job_id, "txt", revision="original").text.startswith("SPEAKER_00: Hello there")
    assert transcript(api, job_id, "txt", revision="1").text == latest["txt"].text
    assert error_body(api.client.get(f"/jobs/{job_id}/transcript?revision=2"), 404)["extra"] == {
        "revision": 1
    }
    assert error_body(api.client.get(f"/jobs/{job_id}/transcript?revision=latest"), 400)

    history = api.client.get(f"/jobs/{job_id}/revisions").json()
    assert history["job_id"] == job_id and history["revision"] == 1
    first, second = history["revisions"]
    assert first["revision"] == 0 and first["author"] is None and first["edits"] is None
    assert second["author"] == "sheila" and second["created_at"] >= first["created_at"]
    assert second["edits"] == [
        {"op": "rename", "speaker": "SPEAKER_00", "to": "Diane Smith", "remember": False},
        {"op": "text", "segment": 1, "text": "The dog sat."},
    ]

    # undo: the revision before, as a new revision, word times and all
    undone = patch(api, job_id, 1, {"op": "restore", "revision": 0})
    assert undone.status_code == 200, undone.text
    assert undone.json()["revision"] == 2 and undone.json()["segments"][1]["words"] == SEGMENTS[1]["words"]
    assert api.client.get(f"/jobs/{job_id}").json()["result_text"] == MACHINE_TEXT


def test_a_never_edited_job_has_its_machine_revision(api: Api) -> None:
    job_id = finished(api.store)
    assert api.client.get(f"/jobs/{job_id}").json()["revision"] == 0
    (only,) = api.client.get(f"/jobs/{job_id}/revisions").json()["revisions"]
    assert only["revision"] == 0 and only["edits"] is None
    assert transcript(api, job_id, "txt", revision="original").text == transcript(api, job_id, "txt").text


def test_two_editors_of_one_revision_never_both_win(api: Api) -> None:
    """Rounds of two clients sending edits made on the same revision at once: one wins, the other gets a
    409 with the revision to fetch, and its edit made on that one then goes in: nothing is lost."""
    job_id = finished(api.store)
    for round_number in range(4):
        base = api.client.get(f"/jobs/{job_id}").json()["revision"]
        start = threading.Barrier(2)
        answers: dict[int, httpx.Response] = {}

        def edit(
            client: int,
            base: int = base,
            start: threading.Barrier = start,
            answers: dict[int, httpx.Response] = answers,
        ) -> None:
            with httpx.Client(base_url=api.url, timeout=30) as own:
                start.wait()
                answers[client] = own.patch(
                    f"/jobs/{job_id}/transcript",
                    json={
                        "revision": base,
                        "edits": [{"op": "text", "segment": client, "text": f"r{client}"}],
                    },
                )

        threads = [threading.Thread(target=edit, args=(client,)) for client in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        statuses = sorted(answer.status_code for answer in answers.values())
        assert statuses == [200, 409], (round_number, [answer.text for answer in answers.values()])
        (loser,) = [client for client, answer in answers.items() if answer.status_code == 409]
        conflict = error_body(answers[loser], 409)
        assert conflict["code"] == "conflict" and conflict["extra"] == {"revision": base + 1}
        assert f"is at revision {base + 1}, not {base} (someone edited it meanwhile)" in conflict["detail"]
        again = patch(api, job_id, base + 1, {"op": "text", "segment": loser, "text": f"r{loser}"})
        assert again.status_code == 200 and again.json()["revision"] == base + 2
    segments = transcript(api, job_id, "json").json()["segments"]
    assert [segment["text"] for segment in segments[:2]] == ["r0", "r1"]
    assert len(api.client.get(f"/jobs/{job_id}/revisions").json()["revisions"]) == 9


def test_an_edit_made_on_a_revision_read_before_another_committed_changes_nothing(api: Api) -> None:
    """The guard itself: the jobs row changes only where it is still at the revision the edit was made on,
    whatever was read before (PostgreSQL's editors read without a lock)."""
    job_id = finished(api.store)
    with api.store.engine.connect() as conn:
        stale_row = revisions.editable(conn, job_id, 0)
    assert patch(api, job_id, 0, {"op": "text", "segment": 0, "text": "first"}).status_code == 200
    with api.store.engine.begin() as conn:
        assert revisions.revise(conn, stale_row, Transcript([]), [], None) is None
    assert transcript(api, job_id, "txt").text.startswith("SPEAKER_00: first")
    assert api.client.get(f"/jobs/{job_id}/revisions").json()["revision"] == 1


# --- refusals ------------------------------------------------------------------------------------------
def test_a_job_not_completed_is_refused(api: Api) -> None:
    running = claimed(api.store)
    refused = error_body(patch(api, running.id, 0, {"op": "text", "segment": 0, "text": "x"}), 409)
    assert refused["detail"] == "the job is processing: its transcript can be edited once it is completed"
    assert refused["extra"] == {"status": "processing"}
    assert error_body(api.client.get(f"/jobs/{running.id}/transcript?revision=original"), 409)
    assert api.client.get(f"/jobs/{running.id}/revisions").json() == {
        "job_id": running.id,
        "revision": 0,
        "revisions": [],
    }
    waiting = api.store.create_job(
        NewJob(source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url=PUBLIC_URL), None
    )
    for status in ("queued", "cancelled"):
        refused = error_body(patch(api, waiting.id, 0, {"op": "text", "segment": 0, "text": "x"}), 409)
        assert refused["detail"].startswith(f"the job is {status}: "), refused
        if status == "queued":
            api.store.request_cancel(waiting.id)
    assert error_body(patch(api, "no-such-job", 0, {"op": "text", "segment": 0, "text": "x"}), 404)


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ({"revision": 0, "edits": [{"op": "text", "segment": 9, "text": "x"}]}, 422, "edit 0: no segment 9"),
        (
            {
                "revision": 0,
                "edits": [
                    {"op": "rename", "speaker": "SPEAKER_00", "to": "A"},
                    {"op": "rename", "speaker": "Bob", "to": "B"},
                ],
            },
            422,
            "edit 1: no speaker named 'Bob'",
        ),
        ({"revision": 0, "edits": [{"op": "split", "segment": 0}]}, 422, "edit 0: split takes either"),
        ({"revision": 0, "edits": [{"op": "merge", "segments": [0, 2]}]}, 422, "neighbouring segments"),
        ({"revision": 0, "edits": [{"op": "text", "segment": 0, "text": "a\x00"}]}, 422, "control character"),
        ({"revision": 0, "edits": [{"op": "erase", "segment": 0}]}, 400, "edits.0"),
        (
            {"revision": 0, "edits": [{"op": "text", "segment": "0", "text": "x"}]},
            400,
            "edits.0.text.segment",
        ),
        ({"revision": 0, "edits": [{"op": "text", "segment": 0, "text": "x", "x": 1}]}, 400, "edits.0"),
        ({"revision": 0, "edits": []}, 400, "edits"),
        ({"edits": [{"op": "text", "segment": 0, "text": "x"}]}, 400, "revision"),
        (
            {"revision": 0, "edits": [{"op": "text", "segment": 0, "text": "x"}], "author": "\x1b[2J"},
            400,
            "author",
        ),
    ],
)
def test_bad_edits_are_refused_and_change_nothing(
    api: Api, body: dict[str, Any], status: int, said: str
) -> None:
    job_id = finished(api.store)
    refused = error_body(api.client.patch(f"/jobs/{job_id}/transcript", json=body), status)
    assert said in json.dumps(refused), refused
    assert api.client.get(f"/jobs/{job_id}").json()["revision"] == 0
    assert transcript(api, job_id, "txt").text.startswith("SPEAKER_00: Hello there, Diane.")


# --- who hears of an edit ------------------------------------------------------------------------------
def test_followers_of_a_job_s_revisions_hear_each_edit(api: Api) -> None:
    job_id = finished(api.store)
    heard: list[tuple[str, dict[str, Any]]] = []
    with api.client.stream("GET", f"/jobs/{job_id}/events", params={"revisions": "true"}) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                heard.append((event, json.loads(line.removeprefix("data: "))))
                if event == "end":  # the stream stays open: edit now
                    assert patch(
                        api, job_id, 0, {"op": "rename", "speaker": "SPEAKER_01", "to": "Sheila"}
                    ).is_success
                if event == "revision":
                    break
    kinds = [kind for kind, _ in heard]
    assert kinds == ["job", "segment", "segment", "segment", "end", "revision"]
    revised = heard[-1][1]
    assert revised["revision"] == 1 and {s["speaker"] for s in revised["speakers"]} == {
        "SPEAKER_00",
        "Sheila",
    }
    # without revisions=true the stream ends with the job
    with api.client.stream("GET", f"/jobs/{job_id}/events") as stream:
        assert [line for line in stream.iter_lines() if line.startswith("event: ")][-1] == "event: end"


def test_an_edit_queues_a_transcript_revised_webhook(api: Api) -> None:
    settings = Settings(database_url=api.settings.database_url, allow_private_urls=True, webhook_secret=None)
    sender = WebhookSender(api.store, settings, "sender-edits")
    with webhook_receiver(200) as receiver:
        job_id = finished(api.store, callback_url=receiver.url)
        assert patch(api, job_id, 0, {"op": "text", "segment": 2, "text": "Good boy."}).status_code == 200
        assert api.client.get(f"/jobs/{job_id}").json()["webhook"]["event"] == "transcript.revised"
        while sender.send_one():
            pass
        final, revised = receiver.wait_for(2)
    deliveries = api.store.list_deliveries(job_id)
    assert [(d.event, d.state) for d in deliveries] == [
        ("job.finished", WebhookState.DELIVERED),
        ("transcript.revised", WebhookState.DELIVERED),
    ]
    assert final.headers["cesar-event"] == "job.finished" and "event" not in json.loads(final.body)
    assert revised.headers["cesar-event"] == "transcript.revised"
    assert revised.headers["cesar-delivery-id"] == deliveries[1].id
    body = json.loads(revised.body)
    assert body["event"] == "transcript.revised" and body["id"] == job_id and body["revision"] == 1
    assert body["result_text"].endswith("Good boy.")


def test_rename_with_remember_adds_the_voice_to_the_library(api: Api) -> None:
    job_id = finished(api.store)
    answer = patch(
        api, job_id, 0, {"op": "rename", "speaker": "SPEAKER_01", "to": "Sheila Edits", "remember": True}
    )
    assert answer.status_code == 200, answer.text
    people = {person["name"]: person for person in api.client.get("/speakers").json()["speakers"]}
    (sample,) = people["Sheila Edits"]["samples"]
    assert (sample["source"], sample["job_id"], sample["label"]) == ("job", job_id, "SPEAKER_01")
    # a name an edit made up has no voice of the job's: refused, and nothing of the request stays
    refused = patch(
        api,
        job_id,
        1,
        {"op": "speaker", "segment": 0, "speaker": "Carol"},
        {"op": "rename", "speaker": "Carol", "to": "Caroline", "remember": True},
    )
    assert "edit 1: 'Caroline' was named by an edit" in error_body(refused, 422)["detail"]
    # a name the library refuses (a diarizer's label) is refused naming the edit
    refused = patch(
        api, job_id, 1, {"op": "rename", "speaker": "SPEAKER_00", "to": "speaker_7", "remember": True}
    )
    assert error_body(refused, 422)["detail"].startswith("edit 0: ")
    assert api.client.get(f"/jobs/{job_id}").json()["revision"] == 1
    assert "Caroline" not in {person["name"] for person in api.client.get("/speakers").json()["speakers"]}
    # the module's later jobs have this voice too: the library forgets it
    assert api.client.delete(f"/speakers/{people['Sheila Edits']['id']}").status_code == 204


# --- for real -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine_result() -> Iterator[JobResult]:
    """speech_en.wav as the real engine transcribes it for a diarized job with word times (once)."""
    from cesar_common.transcription.loading import load_model
    from cesar_common.transcription.whisper import DecodeOptions, transcribe
    from cesar_worker.transcriber import job_result

    model = load_model("tiny.en", device="cpu", compute_type="int8")
    options = DecodeOptions(diarize=True, word_timestamps=True)
    yield job_result(transcribe(model, AUDIO_DIR / "speech_en.wav", options))


def test_a_transcript_the_engine_wrote_is_corrected(api: Api, engine_result: JobResult) -> None:
    job_id = finished(api.store, result=engine_result)
    heard = transcript(api, job_id, "json").json()
    first = heard["segments"][0]
    words = first["words"]
    assert len(words) > 3
    # the second word mistyped by the machine: corrected, the others keep their times
    corrected = [w["word"].strip() for w in words]
    corrected[1] = "Groundhog"
    edited = patch(
        api,
        job_id,
        0,
        {"op": "text", "segment": 0, "text": " ".join(corrected)},
        {"op": "split", "segment": 0, "word": 1},
        {"op": "rename", "speaker": first["speaker"], "to": "Narrator"},
    )
    assert edited.status_code == 200, edited.text
    one, two = edited.json()["segments"][:2]
    kept = [w for i, w in enumerate(words) if i != 1]
    assert [(w["start"], w["end"]) for w in one["words"] + two["words"]] == [
        (w["start"], w["end"]) for w in kept
    ]
    assert one["end"] == words[0]["end"] and two["start"] == words[2]["start"]
    assert one["text"].split()[1] == "Groundhog" and one["speaker"] == two["speaker"] == "Narrator"
    assert "Narrator: " in transcript(api, job_id, "srt").text
    assert transcript(api, job_id, "json", revision="original").json()["segments"][0] == first

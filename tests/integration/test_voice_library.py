"""The voice library over HTTP on both backends (people, voice prints from diarized jobs, privacy), diarized
jobs named from it by the worker's naming step, and, for real, an audio sample read by a real worker into
a print that then names a real diarized job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from api_helpers import AUDIO_DIR, DECODING, PUBLIC_URL, Api, error_body, running_api
from dbtools import migrate

from cesar_common.db.records import JobRecord, JobResult, JobSource, JobStatus, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore
from cesar_common.diarization.library import MATCH_DISTANCE
from cesar_common.settings import Settings
from cesar_worker import speaker_names
from cesar_worker.transcriber import WhisperTranscriber
from cesar_worker.worker import Worker

RNG = np.random.default_rng(30)


def _voice(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=256)
    return [float(value) for value in vector / np.linalg.norm(vector)]


DIANE, SHEILA = _voice(1), _voice(2)
SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 2.0, "text": "Hello there.", "speaker": "SPEAKER_00"},
    {"id": 1, "start": 2.5, "end": 5.0, "text": "Hi, how are you?", "speaker": "SPEAKER_01"},
    {"id": 2, "start": 5.5, "end": 6.5, "text": "Fine.", "speaker": "SPEAKER_00"},
]


def diarizing_job(store: JobStore, **options: Any) -> JobRecord:
    """A diarized job claimed by a worker (the only one: other queued jobs are cancelled)."""
    for queued in store.list_jobs(status=JobStatus.QUEUED, limit=1000).jobs:
        store.request_cancel(queued.id)
    new = NewJob(
        source=JobSource.URL,
        options=TranscribeOptions(model="tiny.en", diarize=True, **options),
        source_url=PUBLIC_URL,
    )
    job = store.create_job(new, None)
    claimed = store.claim_work("test-worker", lease_seconds=60)
    assert isinstance(claimed, JobRecord) and claimed.id == job.id
    return claimed


def diarized_job(store: JobStore, voices: dict[str, list[float]] | None = None) -> JobRecord:
    """A completed diarized job as the worker leaves one: segments by label, its voices kept."""
    job = diarizing_job(store)
    result = JobResult(
        text="Hello there. Hi, how are you? Fine.",
        language="en",
        language_probability=0.99,
        duration=6.5,
        segments=SEGMENTS,
        decoding=DECODING,
        speakers=[{"speaker": "SPEAKER_00", "duration": 3.0}, {"speaker": "SPEAKER_01", "duration": 2.5}],
        voices=voices or {"SPEAKER_00": DIANE, "SPEAKER_01": SHEILA},
    )
    result = speaker_names.named(store, job, result)
    assert store.complete_job(job.id, "test-worker", result)
    return store.get_job(job.id, with_segments=True)


def test_people_are_made_from_a_diarized_jobs_voices_renamed_and_removed(api: Api) -> None:
    job = diarized_job(api.store)
    created = api.client.post(
        "/speakers", json={"name": " Diane  Smith ", "job_id": job.id, "label": "SPEAKER_00"}
    )
    assert created.status_code == 201, created.text
    person = created.json()
    assert person["name"] == "Diane Smith"
    assert created.headers["location"] == f"/speakers/{person['id']}"
    (sample,) = person["samples"]
    assert sample | {"id": None, "created_at": None} == {
        "id": None,
        "source": "job",
        "status": "ready",
        "seconds": 3.0,
        "job_id": job.id,
        "label": "SPEAKER_00",
        "filename": None,
        "error": None,
        "created_at": None,
    }
    taken = error_body(
        api.client.post("/speakers", json={"name": "DIANE smith", "job_id": job.id, "label": "SPEAKER_01"}),
        409,
    )
    assert "Diane Smith" in taken["detail"]

    # more voices, a new name, one voice removed: all by PATCH
    patched = api.client.patch(
        f"/speakers/{person['id']}",
        json={"name": "Diane", "add": [{"job_id": job.id, "label": "SPEAKER_01"}]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Diane"
    assert [s["label"] for s in patched.json()["samples"]] == ["SPEAKER_00", "SPEAKER_01"]
    second = patched.json()["samples"][1]["id"]
    removed = api.client.delete(f"/speakers/{person['id']}/samples/{second}")
    assert [s["label"] for s in removed.json()["samples"]] == ["SPEAKER_00"]
    listed = api.client.get("/speakers").json()["speakers"]
    assert [p["name"] for p in listed if p["id"] == person["id"]] == ["Diane"]

    # a voice print taken from a job goes with the job
    assert api.client.delete(f"/jobs/{job.id}").status_code == 204
    assert api.client.get(f"/speakers/{person['id']}").json()["samples"] == []
    assert api.client.delete(f"/speakers/{person['id']}").status_code == 204
    error_body(api.client.get(f"/speakers/{person['id']}"), 404)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "SPEAKER_03"}, 422, "labels of unknown voices"),
        ({"name": "   "}, 400, "at least 1 character"),
        ({"name": "Ann", "job_id": "x"}, 422, "both job_id and label"),
        (
            {"name": "Ann", "job_id": "0193a7e0-0000-7000-8000-000000000000", "label": "SPEAKER_00"},
            404,
            "no voice",
        ),
        ({"name": "Ann", "age": 3}, 400, ""),
    ],
)
def test_a_bad_person_is_refused_with_a_reason(
    api: Api, body: dict[str, Any], status: int, words: str
) -> None:
    before = len(api.client.get("/speakers").json()["speakers"])
    refused = error_body(api.client.post("/speakers", json=body), status)
    assert words in refused["detail"] or words in str(refused.get("extra"))
    assert len(api.client.get("/speakers").json()["speakers"]) == before


def test_a_sample_that_is_not_audio_is_refused_and_leaves_nobody(api: Api) -> None:
    before = len(api.client.get("/speakers").json()["speakers"])
    with (AUDIO_DIR / "not_audio.mp3").open("rb") as junk:
        refused = api.client.post("/speakers", data={"name": "Nobody"}, files={"file": ("x.mp3", junk)})
    error_body(refused, 415)
    with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
        unnamed = api.client.post("/speakers", files={"file": ("x.wav", audio)})
    error_body(unnamed, 422)
    assert len(api.client.get("/speakers").json()["speakers"]) == before


def test_diarized_jobs_name_the_voices_the_library_knows(api: Api) -> None:
    first = diarized_job(api.store)
    diane = api.client.post(
        "/speakers", json={"name": "Diane Rivers", "job_id": first.id, "label": "SPEAKER_00"}
    ).json()

    # the same voice a little off, in a new job: named; the other voice keeps its label
    nearby = np.asarray(DIANE) + 0.02 * RNG.normal(size=256)
    job = diarized_job(api.store, {"SPEAKER_00": list(nearby), "SPEAKER_01": SHEILA})
    assert [segment["speaker"] for segment in job.segments or []] == [
        "Diane Rivers",
        "SPEAKER_01",
        "Diane Rivers",
    ]
    speakers = {entry["speaker"]: entry for entry in job.speakers or []}
    assert speakers["Diane Rivers"]["label"] == "SPEAKER_00"
    assert speakers["Diane Rivers"]["speaker_id"] == diane["id"]
    assert 0 < speakers["Diane Rivers"]["distance"] <= MATCH_DISTANCE
    assert speakers["SPEAKER_01"] == {
        "speaker": "SPEAKER_01",
        "duration": 2.5,
        "label": "SPEAKER_01",
        "speaker_id": None,
        "distance": None,
    }
    body = api.client.get(f"/jobs/{job.id}").json()
    assert body["speakers"] == job.speakers
    rttm = api.client.get(f"/jobs/{job.id}/transcript", params={"format": "rttm"}).text
    assert " Diane_Rivers <NA> <NA>" in rttm and " SPEAKER_01 <NA> <NA>" in rttm
    assert (
        "<v Diane Rivers>Hello there."
        in api.client.get(f"/jobs/{job.id}/transcript", params={"format": "vtt"}).text
    )
    assert (
        "Diane Rivers: Hello there."
        in api.client.get(f"/jobs/{job.id}/transcript", params={"format": "srt"}).text
    )

    # one person never names two speakers of a job, even when both voices are near theirs
    twins = diarized_job(api.store, {"SPEAKER_00": DIANE, "SPEAKER_01": list(nearby)})
    assert [entry["speaker"] for entry in twins.speakers or []] == ["Diane Rivers", "SPEAKER_01"]


def test_naming_can_be_off_or_kept_to_some_people(api: Api) -> None:
    first = diarized_job(api.store)
    api.client.post("/speakers", json={"name": "Sheila Moss", "job_id": first.id, "label": "SPEAKER_01"})
    for options, wanted in (
        ({"name_speakers": False}, "SPEAKER_01"),
        ({"known_speakers": ("Someone Else",)}, "SPEAKER_01"),
        ({"known_speakers": ("sheila moss",)}, "Sheila Moss"),
    ):
        job = diarizing_job(api.store, **options)
        result = JobResult(
            text="",
            language="en",
            language_probability=1.0,
            duration=6.5,
            segments=SEGMENTS,
            speakers=[],
            voices={"SPEAKER_00": DIANE, "SPEAKER_01": SHEILA},
        )
        named = speaker_names.named(api.store, job, result)
        assert named.segments[1]["speaker"] == wanted, options


# --- for real: a sample read by a real worker names a real diarized job ------------------------------
@contextmanager
def whisper_worker(url: str) -> Iterator[None]:
    settings = Settings(
        database_url=url,
        models="tiny.en",
        model="tiny.en",
        device="cpu",
        compute_type="int8",
        threads=1,
        poll_max_seconds=0.2,
        live_sessions=0,
        offline=True,
    )
    store = JobStore.from_url(url)
    stop = threading.Event()
    worker = Worker(settings, store, WhisperTranscriber(settings), worker_id="voices", stop_event=stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
        store.close()


def _until(api: Api, path: str, done: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(body := api.client.get(path).json()):
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    return body


@pytest.fixture(scope="module")
def real_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The real engine runs once, on SQLite (the store is tested on both backends above)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('voices') / 'cesar.db'}"
    migrate(url)
    with running_api(url, model="tiny.en", models="tiny.en") as running, whisper_worker(url):
        yield running


def test_an_audio_sample_read_by_a_worker_names_a_real_diarized_job(real_api: Api) -> None:
    api = real_api
    with (AUDIO_DIR / "speech_en.flac").open("rb") as audio:
        made = api.client.post(
            "/speakers", data={"name": "Narrator"}, files={"file": ("narrator.flac", audio, "audio/flac")}
        )
    assert made.status_code == 201, made.text
    person = made.json()
    assert person["samples"][0]["status"] == "pending"
    assert person["samples"][0]["filename"] == "narrator.flac"
    ready = _until(api, f"/speakers/{person['id']}", lambda body: body["samples"][0]["status"] != "pending")
    sample = ready["samples"][0]
    assert sample["status"] == "ready", sample
    assert 4 < sample["seconds"] <= 7.2
    reader = api.client.get(f"/jobs/{sample['job_id']}").json()
    assert reader["source"] == "sample" and reader["status"] == "completed"

    with (AUDIO_DIR / "speech_en.wav").open("rb") as audio:
        job = api.client.post(
            "/transcribe", data={"diarize": "true"}, files={"file": ("story.wav", audio)}
        ).json()
    done = _until(api, f"/jobs/{job['id']}", lambda body: body["status"] in ("completed", "error"))
    assert done["status"] == "completed", done
    (speaker,) = done["speakers"]
    assert speaker["speaker"] == "Narrator" and speaker["speaker_id"] == person["id"], speaker
    assert speaker["label"] == "SPEAKER_00" and speaker["distance"] <= MATCH_DISTANCE
    assert "Narrator: " in api.client.get(f"/jobs/{job['id']}/transcript", params={"format": "srt"}).text

    # silence makes no voice print: the sample says why, the person keeps no print
    with (AUDIO_DIR / "silence.wav").open("rb") as audio:
        added = api.client.post(f"/speakers/{person['id']}/samples", files={"file": ("quiet.wav", audio)})
    assert added.status_code == 201, added.text
    failed = _until(api, f"/speakers/{person['id']}", lambda body: body["samples"][-1]["status"] != "pending")
    assert failed["samples"][-1]["status"] == "error"
    assert "s of speech" in failed["samples"][-1]["error"]

    # deleting the person deletes their prints and the jobs that read their samples
    assert api.client.delete(f"/speakers/{person['id']}").status_code == 204
    assert api.client.get(f"/jobs/{sample['job_id']}").status_code == 404
    assert all(row[0] != person["id"] for row in api.store.voice_library_rows(""))

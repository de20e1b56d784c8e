"""``GET /jobs/{id}/audio``, on SQLite and PostgreSQL: a live session sent as raw PCM comes back as a WAV file
a browser plays (its header written for the session's sample rate, then the stored chunks), an upload as it
was received, and a job whose audio is not stored gets a 404 that says why."""

from __future__ import annotations

import io
import wave

import httpx
from api_helpers import AUDIO_DIR, DECODING, Api, error_body, url_job

from cesar_common.db.records import AudioFormat, JobRecord, JobResult, JobSource, NewJob, TranscribeOptions
from cesar_common.db.store import JobStore

OPTIONS = TranscribeOptions(model="tiny.en")


def pcm_session(store: JobStore, rate: int) -> JobRecord:
    job, created = store.open_live_session(NewJob(JobSource.LIVE, OPTIONS), AudioFormat.PCM_S16LE, rate)
    assert created
    return job


def samples(count: int, seed: int) -> bytes:
    return bytes((seed + n) % 256 for n in range(count * 2))


def read_wav(response: httpx.Response) -> tuple[tuple[int, int, int], bytes]:
    """(channels, bytes per sample, rate) and the samples."""
    with wave.open(io.BytesIO(response.content)) as audio:
        layout = (audio.getnchannels(), audio.getsampwidth(), audio.getframerate())
        return layout, audio.readframes(audio.getnframes())


def test_a_pcm_live_session_comes_as_a_wav_at_its_rate_with_what_arrived_so_far(api: Api) -> None:
    job = pcm_session(api.store, 22050)
    pieces = [samples(2205, 1), samples(800, 2), samples(3, 3)]  # pieces of any size, as clients send
    for piece in pieces[:2]:
        api.store.append_live_audio(job.id, piece)

    response = api.client.get(f"/jobs/{job.id}/audio")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert int(response.headers["content-length"]) == len(response.content) == 44 + 2 * (2205 + 800)
    layout, frames = read_wav(response)
    assert layout == (1, 2, 22050)
    assert frames == pieces[0] + pieces[1]

    api.store.append_live_audio(job.id, pieces[2])
    assert read_wav(api.client.get(f"/jobs/{job.id}/audio"))[1] == b"".join(pieces)


def test_half_a_sample_sent_last_is_left_out_of_the_wav(api: Api) -> None:
    job = pcm_session(api.store, 16000)
    api.store.append_live_audio(job.id, samples(100, 4) + b"\x01")
    response = api.client.get(f"/jobs/{job.id}/audio")
    assert int(response.headers["content-length"]) == len(response.content) == 44 + 200
    assert read_wav(response)[1] == samples(100, 4)


def test_a_container_session_and_an_upload_come_as_they_were_received(api: Api) -> None:
    job, _ = api.store.open_live_session(NewJob(JobSource.LIVE, OPTIONS), AudioFormat.CONTAINER, None)
    api.store.append_live_audio(job.id, b"OggS-first")
    api.store.append_live_audio(job.id, b"-second")
    response = api.client.get(f"/jobs/{job.id}/audio")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"OggS-first-second"

    mp3 = (AUDIO_DIR / "speech_en.mp3").read_bytes()
    sent = api.client.post("/transcribe", files={"file": ("speech_en.mp3", mp3, "audio/mpeg")})
    assert sent.status_code == 202, sent.text
    response = api.client.get(f"/jobs/{sent.json()['id']}/audio")
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-disposition"] == 'attachment; filename="speech_en.mp3"'
    assert response.content == mp3


def test_an_upload_s_claimed_type_is_given_back_only_when_it_is_audio_or_video(api: Api) -> None:
    sent = api.client.post(
        "/transcribe", files={"file": ("page.html", (AUDIO_DIR / "speech_en.wav").read_bytes(), "text/html")}
    )
    assert sent.status_code == 202, sent.text
    response = api.client.get(f"/jobs/{sent.json()['id']}/audio")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_audio_not_stored_is_a_404_that_says_why(api: Api, api_db: str) -> None:
    assert error_body(api.client.get("/jobs/01a24a24-69de-7000-afe4-ad140265c6b2/audio"), 404)["code"] == (
        "not_found"
    )
    fetched = url_job(api.store)
    assert "URL job" in error_body(api.client.get(f"/jobs/{fetched.id}/audio"), 404)["detail"]
    silent = pcm_session(api.store, 16000)
    assert "arrived yet" in error_body(api.client.get(f"/jobs/{silent.id}/audio"), 404)["detail"]

    ended = finished_session(api.store)
    detail = error_body(api.client.get(f"/jobs/{ended.id}/audio"), 404)["detail"]
    assert "no longer stored" in detail and "CESAR_KEEP_AUDIO" in detail

    keeping = JobStore.from_url(api_db, keep_audio=True)
    try:
        kept = finished_session(keeping)
    finally:
        keeping.close()
    assert read_wav(api.client.get(f"/jobs/{kept.id}/audio"))[1] == samples(1600, 5)


def finished_session(store: JobStore) -> JobRecord:
    """A session with a tenth of a second of audio, claimed and completed as its worker would."""
    job = pcm_session(store, 16000)
    store.append_live_audio(job.id, samples(1600, 5))
    while (claimed := store.claim_live("audio-test", lease_seconds=60)) is not None and claimed.id != job.id:
        store.request_cancel(claimed.id)  # an earlier test's session, still queued
    result = JobResult(
        text="", language="en", language_probability=1.0, duration=0.1, segments=[], decoding=DECODING
    )
    assert store.complete_job(job.id, "audio-test", result)
    return store.get_job(job.id)

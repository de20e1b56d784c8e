"""A live session started with ``diarize`` ends as a diarized job: its final pass, which decodes the whole
session as a file, finds the speakers (the real telephone call of two women, sent as fast as it is taken)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from live_support import LiveSession, pcm_of, ws_url
from serve_helpers import AUDIO_DIR, running_serve

pytestmark = pytest.mark.timeout(300)


def test_a_diarized_session_s_transcript_names_its_speakers(tmp_path: Path) -> None:
    with running_serve(f"sqlite:///{tmp_path / 'cesar.db'}", log_path=tmp_path / "serve.log") as serve:
        session = LiveSession(ws_url(serve.url))
        answer = session.start(language="en", diarize=True, num_speakers=2)
        assert answer["type"] == "session", answer
        session.send_audio(pcm_of(AUDIO_DIR / "two_speakers.wav"), pace=None)
        session.stop()
        job = session.wait_final()["job"]
        assert job["status"] == "completed", job
        assert job["options"]["diarize"] and [s["speaker"] for s in job["speakers"]] == [
            "SPEAKER_00",
            "SPEAKER_01",
        ]
        transcript = httpx.get(f"{serve.url}/jobs/{job['id']}/transcript", params={"format": "json"}).json()
        assert {segment["speaker"] for segment in transcript["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
        turns = httpx.get(f"{serve.url}/jobs/{job['id']}/transcript", params={"format": "rttm"}).text
        assert {line.split()[7] for line in turns.splitlines()} == {"SPEAKER_00", "SPEAKER_01"}

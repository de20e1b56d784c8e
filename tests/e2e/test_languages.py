"""Every language for real: the multilingual ``base`` (the ``multilingual-model`` extra, a test dependency)
through a real `cesar serve` as the default model: detection with its probability in the job JSON, on
``/detect-language`` and in ``/v1`` ``verbose_json``; transcription of German, Spanish, Italian and Romanian;
translation into English through ``task=translate``, the `openai` client's ``translations.create`` and
``/asr?task=translate``; the CLI; a file whose language changes halfway; Cyrillic through every output format.
On SQLite here, on PostgreSQL in test_languages_postgres.py (the same story)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import openai
import pytest
import wer
from serve_helpers import AUDIO_DIR, CESAR, Client, running_serve

README = (AUDIO_DIR / "README.md").read_text()
DETECTED = {"speech_de": "de", "speech_es": "es", "speech_it": "it", "speech_ro": "ro"}
#: words of each transcript that come out on every CPU tried (the fixtures' README)
HEARD = {
    "speech_de": ["morgen", "park"],
    "speech_es": ["días", "gusta"],
    "speech_it": ["cucina", "vino"],
    "speech_ro": ["foarte", "mergem"],
}
ENV = {"CESAR_MODEL": "base", "CESAR_MODELS": "base,tiny.en"}

pytestmark = pytest.mark.timeout(600)


def test_languages_on_sqlite(tmp_path: Path) -> None:
    languages_story(f"sqlite:///{tmp_path / 'cesar.db'}", tmp_path)


def languages_story(db_url: str, tmp_path: Path) -> None:
    with running_serve(db_url, log_path=tmp_path / "serve.log", env=ENV) as serve:
        client = Client(serve.url)
        jobs = {name: client.upload(AUDIO_DIR / f"{name}.flac") for name in DETECTED}
        russian = client.upload(AUDIO_DIR / "speech_ru.flac", language="ru")
        mixed = client.upload(AUDIO_DIR / "speech_de_es.flac")
        translated = client.upload(AUDIO_DIR / "speech_es.flac", task="translate")
        done = client.wait_all([*jobs.values(), russian, mixed, translated], timeout=300)

        for name, job_id in jobs.items():
            job = done[job_id]
            assert job["status"] == "completed", job
            assert job["model"] == "base"
            assert job["detected_language"] == DETECTED[name], job
            assert job["language_probability"] >= 0.5, job
            words = wer.normalise(client.transcript(job_id, "txt")).split()
            for word in HEARD[name]:
                assert word in words, (name, words)

        # translation into English, as a job
        english = wer.normalise(client.transcript(translated, "txt")).split()
        assert "mountains" in english, english

        # a file whose language changes halfway: one language per file, the first 30 s decide
        assert done[mixed]["detected_language"] == "de"
        assert "morgen" in wer.normalise(client.transcript(mixed, "txt")).split()

        # Cyrillic intact through every output format
        assert done[russian]["options"]["language"] == "ru"
        for fmt in ("txt", "srt", "vtt", "tsv", "json"):
            text = client.transcript(russian, fmt)
            assert "Сегодня" in text or "говорить" in text, (fmt, text)
        assert "говорить" in json.loads(client.transcript(russian, "json"))["text"]

        # the other doors
        with (AUDIO_DIR / "speech_it.flac").open("rb") as audio:
            detected = httpx.post(f"{serve.url}/detect-language", files={"audio_file": audio}, timeout=120)
        assert detected.status_code == 200, detected.text
        assert (detected.json()["language_code"], detected.json()["detected_language"]) == ("it", "italian")
        assert detected.json()["confidence"] >= 0.5

        openai_client = openai.OpenAI(
            base_url=f"{serve.url}/v1", api_key="unused", max_retries=0, timeout=120
        )
        with (AUDIO_DIR / "speech_es.flac").open("rb") as audio, pytest.deprecated_call():  # by the SDK
            translation = openai_client.audio.translations.create(model="whisper-1", file=audio)
        assert "mountains" in wer.normalise(translation.text).split(), translation.text
        with (AUDIO_DIR / "speech_de.flac").open("rb") as audio:
            verbose = openai_client.audio.transcriptions.create(
                model="base", file=audio, response_format="verbose_json"
            )
        assert verbose.language == "german"

        with (AUDIO_DIR / "speech_es.flac").open("rb") as audio:
            asr = httpx.post(
                f"{serve.url}/asr",
                params={"task": "translate", "output": "txt"},
                files={"audio_file": audio},
                timeout=120,
            )
        assert asr.status_code == 200, asr.text
        assert "mountains" in wer.normalise(asr.text).split(), asr.text
        client.close()


def test_the_cli_transcribes_and_translates_with_base(tmp_path: Path) -> None:
    env = {**os.environ, "CESAR_OFFLINE": "true", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [CESAR, "transcribe", str(AUDIO_DIR / "speech_it.flac"), "--model", "base", "-f", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["language"] == "it"
    assert "vino" in wer.normalise(result["text"]).split()
    run = subprocess.run(
        [CESAR, "transcribe", str(AUDIO_DIR / "speech_es.flac"), "--model", "base", "--task", "translate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "mountains" in wer.normalise(run.stdout).split(), run.stdout

"""Languages through `cesar serve` on PostgreSQL: detection, transcription and translation with the
multilingual base (the doors, the formats and the CLI are test_languages.py's, on SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import wer
from serve_helpers import AUDIO_DIR, Client, running_serve
from test_languages import ENV, HEARD
from test_live import postgres_schema

pytestmark = [pytest.mark.timeout(600), pytest.mark.postgres]


def test_languages_on_postgres(postgres_server_url: str, tmp_path: Path) -> None:
    with (
        postgres_schema(postgres_server_url) as db,
        running_serve(db, log_path=tmp_path / "serve.log", env=ENV) as serve,
    ):
        client = Client(serve.url)
        german = client.upload(AUDIO_DIR / "speech_de.flac")
        italian = client.upload(AUDIO_DIR / "speech_it.flac")
        translated = client.upload(AUDIO_DIR / "speech_es.flac", task="translate")
        done = client.wait_all([german, italian, translated], timeout=300)
        for job_id, language, name in ((german, "de", "speech_de"), (italian, "it", "speech_it")):
            assert (done[job_id]["detected_language"], done[job_id]["status"]) == (language, "completed")
            assert done[job_id]["language_probability"] >= 0.5
            words = wer.normalise(client.transcript(job_id, "txt")).split()
            assert all(word in words for word in HEARD[name]), words
        assert "mountains" in wer.normalise(client.transcript(translated, "txt")).split()
        client.close()

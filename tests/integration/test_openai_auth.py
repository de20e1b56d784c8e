"""OpenAI-compatible routes behind CESAR_API_KEY: the official client's key is the Bearer key, a wrong one is
an AuthenticationError at once (401 is not retried), and the answers are in OpenAI's error shape."""

from __future__ import annotations

import re

import httpx
import openai
import pytest
from api_helpers import AUDIO_DIR, job_count, running_api


def count_401(api_url: str, route: str, key: str) -> int:
    text = httpx.get(f"{api_url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    total = 0
    for line in text.splitlines():
        if (
            line.startswith("cesar_http_requests_total{")
            and f'route="{route}"' in line
            and 'status="401"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_a_wrong_key_is_refused_once_in_openais_shape(sqlite_url: str) -> None:
    with running_api(sqlite_url, api_key="the-right-key") as api:
        wrong = openai.OpenAI(base_url=f"{api.url}/v1", api_key="a-wrong-key")  # default retries
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.models.list()
        assert caught.value.code == "invalid_api_key" and caught.value.type == "invalid_request_error"
        with (AUDIO_DIR / "speech_en.wav").open("rb") as audio, pytest.raises(openai.AuthenticationError):
            wrong.audio.transcriptions.create(model="whisper-1", file=audio)
        assert count_401(api.url, "/v1/models", "the-right-key") == 1
        assert count_401(api.url, "/v1/audio/transcriptions", "the-right-key") == 1
        assert job_count(api.store) == 0

        reply = httpx.post(f"{api.url}/v1/audio/transcriptions")  # no key at all
        assert reply.status_code == 401 and set(reply.json()["error"]) == {"message", "type", "param", "code"}
        assert re.match(r"Bearer", reply.headers["WWW-Authenticate"])

        right = openai.OpenAI(base_url=f"{api.url}/v1", api_key="the-right-key")
        assert next(model.id for model in right.models.list()) == "whisper-1"

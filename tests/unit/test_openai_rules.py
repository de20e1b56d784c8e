"""The OpenAI-compatible routes check fields as OpenAI does: each refusal names its `param`."""

from __future__ import annotations

import pytest

from cesar_api.compat.openai import OpenAIError, parse_request, resolve_model
from cesar_common.settings import Settings

GRANULARITIES = "timestamp_granularities[]"

SETTINGS = Settings(
    database_url="sqlite:///:memory:", models=["base"], model_aliases={"gpt-4o-transcribe": "base"}
)


def test_model_names() -> None:
    assert resolve_model("whisper-1", SETTINGS) == "tiny.en"
    assert resolve_model("gpt-4o-transcribe", SETTINGS) == "base"
    assert resolve_model("base", SETTINGS) == "base"
    with pytest.raises(OpenAIError) as caught:
        resolve_model("large-v3", SETTINGS)
    assert (caught.value.param, caught.value.error_code, caught.value.status) == (
        "model",
        "model_not_found",
        400,
    )


def test_defaults() -> None:
    asked = parse_request("transcribe", {"model": "whisper-1"}, {}, SETTINGS)
    assert (asked.model, asked.response_format, asked.segments, asked.words, asked.stream) == (
        "tiny.en", "json", True, False, False
    )  # fmt: skip
    asked = parse_request(
        "transcribe",
        {"model": "whisper-1", "response_format": "verbose_json", "language": "de", "prompt": "Hallo"},
        {GRANULARITIES: ["word"]},
        SETTINGS,
    )
    assert (asked.words, asked.segments, asked.language, asked.prompt) == (True, False, "de", "Hallo")


@pytest.mark.parametrize(
    ("task", "fields", "lists", "param"),
    [
        ("transcribe", {}, {}, "model"),
        ("transcribe", {"model": "whisper-1", "response_format": "docx"}, {}, "response_format"),
        ("transcribe", {"model": "whisper-1", "temperature": "1.5"}, {}, "temperature"),
        ("transcribe", {"model": "whisper-1", "temperature": "warm"}, {}, "temperature"),
        ("transcribe", {"model": "whisper-1"}, {GRANULARITIES: ["word"]}, "timestamp_granularities"),
        ("transcribe", {"model": "whisper-1", "response_format": "verbose_json"},
         {GRANULARITIES: ["sentence"]}, "timestamp_granularities"),
        ("transcribe", {"model": "whisper-1", "stream": "true", "response_format": "srt"}, {}, "stream"),
        ("transcribe", {"model": "whisper-1", "stream": "maybe"}, {}, "stream"),
        ("transcribe", {"model": "whisper-1", "language": "klingon"}, {}, "language"),
        ("transcribe", {"model": "whisper-1", "chunking_strategy": "server_vad"}, {}, "chunking_strategy"),
        ("transcribe", {"model": "whisper-1", "include[]": "logprobs"}, {}, "include[]"),
        ("translate", {"model": "whisper-1", "language": "en"}, {}, "language"),
    ],
)  # fmt: skip
def test_refusals_name_their_param(
    task: str, fields: dict[str, str], lists: dict[str, list[str]], param: str
) -> None:
    with pytest.raises(OpenAIError) as caught:
        parse_request(task, fields, lists, SETTINGS)  # type: ignore[arg-type]
    assert caught.value.param == param and caught.value.status == 400
    assert set(caught.value.body()["error"]) == {"message", "type", "param", "code"}

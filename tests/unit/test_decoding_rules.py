"""The decoding options' one declaration and its one check (``cesar_common.job_options``): what each reads
and refuses, how a job's columns hold them, the fingerprint of a job without them (unchanged), which need
sequential decoding, and the manual's table (written from the declaration)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from cesar_common.db.idempotency import request_fingerprint
from cesar_common.db.records import JobSource, NewJob
from cesar_common.errors import InvalidInputError
from cesar_common.job_options import (
    DECODING_NAMES,
    OPTION_NAMES,
    DecodingOptions,
    TranscribeOptions,
    check_options,
    decoding_json,
    option_columns,
    option_text,
    options_dict,
    options_from,
    options_from_columns,
    parse_option,
    parse_options,
)
from cesar_common.transcription.whisper import sequential_only

ROOT = Path(__file__).parents[2]
SPANS = (
    "clip_timestamps takes spans as start,end,start,end... in seconds, in order, each ending after it starts"
)


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("temperature", "0, 0.2,0.4", (0.0, 0.2, 0.4)),
        ("temperature", "0.5", (0.5,)),
        ("temperature", 1, (1.0,)),
        ("temperature", [0, 0.2], (0.0, 0.2)),
        ("suppress_tokens", "-1,13", (-1, 13)),
        ("suppress_tokens", "", ()),  # nothing suppressed but Whisper's special tokens
        ("suppress_tokens", [13.0], (13,)),
        ("clip_timestamps", "0,3,5", (0.0, 3.0, 5.0)),
        ("clip_timestamps", "1.5,3,3,4", (1.5, 3.0, 3.0, 4.0)),  # a span may start where one ended
        ("no_speech_threshold", "0.3", 0.3),
        ("log_prob_threshold", -2, -2.0),
        ("no_repeat_ngram_size", "3", 3),
        ("vad_min_silence_ms", 500.0, 500),
        ("hotwords", "  Cesar, Litestar ", "Cesar, Litestar"),
        ("hotwords", " ", None),
        ("condition_on_previous_text", True, True),
        ("temperature", None, None),
    ],
)
def test_what_each_option_reads(name: str, value: Any, read: Any) -> None:
    assert parse_option(name, value) == read
    assert type(parse_option(name, value)) is type(read)


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("temperature", "", "temperature takes 1 to 10 numbers separated by commas, not 0"),
        (
            "temperature",
            ",".join(["0"] * 11),
            "temperature takes 1 to 10 numbers separated by commas, not 11",
        ),
        ("temperature", "nan", "temperature: 'nan' is not a number from 0 to 1"),
        ("temperature", [True], "temperature: True is not a number from 0 to 1"),
        ("no_speech_threshold", "inf", "no_speech_threshold must be a number from 0 to 1, not 'inf'"),
        ("no_repeat_ngram_size", 2.5, "no_repeat_ngram_size must be a whole number from 0 to 20, not 2.5"),
        ("suppress_tokens", ",".join(["1"] * 101), "suppress_tokens takes at most 100 numbers"),
        ("clip_timestamps", "-1", "clip_timestamps: '-1' is not a number of at least 0"),
        ("clip_timestamps", "0,3,2", f"{SPANS}: not 3 then 2"),
        ("clip_timestamps", "2,2", f"{SPANS}: not 2 then 2"),
    ],
)
def test_what_each_option_refuses(name: str, value: Any, why: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_option(name, value)
    assert str(refused.value).startswith(why), refused.value


def test_a_command_line_names_the_flag() -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_options({"temperature": "2", "model": "tiny.en"}, flags=True)
    assert (refused.value.message, refused.value.extra) == (
        "--temperature: '2' is not a number from 0 to 1",
        {"field": "temperature"},
    )
    assert parse_options({"temperature": "0,1", "language": "en"}) == {
        "temperature": (0.0, 1.0),
        "language": "en",
    }


def test_vad_options_need_vad() -> None:
    for name, value in (("vad_threshold", 0.3), ("vad_min_silence_ms", 100), ("vad_speech_pad_ms", 0)):
        options = options_from({name: value, "vad": False}, model="tiny.en")
        with pytest.raises(InvalidInputError, match=f"^{name} tunes voice activity detection"):
            check_options(options)
        assert check_options(options_from({name: value}, model="tiny.en"))  # with VAD on
    assert check_options(options_from({"vad": False, "vad_threshold": 0.5}, model="tiny.en"))  # its default


def test_every_door_names_them_alike_and_the_job_json_shows_them_flat() -> None:
    assert OPTION_NAMES[-len(DECODING_NAMES) :] == DECODING_NAMES
    shown = options_dict(options_from({"hotwords": "Cesar"}, model="tiny.en"))
    assert list(shown) == list(OPTION_NAMES) and shown["hotwords"] == "Cesar"
    assert shown["temperature"] == (0.0,) and shown["vad_min_silence_ms"] is None


def test_the_columns_hold_only_what_differs_from_the_defaults() -> None:
    plain = TranscribeOptions(model="tiny.en")
    assert option_columns(plain)["decoding_options"] is None
    tuned = options_from(
        {"temperature": (0.0, 0.2), "hotwords": "Cesar", "suppress_tokens": ()}, model="tiny.en"
    )
    columns = option_columns(tuned)
    assert columns["decoding_options"] == {
        "hotwords": "Cesar",
        "temperature": [0.0, 0.2],
        "suppress_tokens": [],
    }
    assert json.loads(json.dumps(columns["decoding_options"])) == columns["decoding_options"]
    assert options_from_columns(columns) == tuned
    # an option a newer version stored is left out by this one
    assert options_from_columns({**columns, "decoding_options": {"hotwords": "x", "beam_of": 3}}) == (
        options_from({"hotwords": "x"}, model="tiny.en")
    )
    assert decoding_json(DecodingOptions(temperature=(0.0,))) is None


def test_a_job_without_them_keeps_its_fingerprint() -> None:
    new = NewJob(source=JobSource.URL, options=TranscribeOptions(model="tiny.en"), source_url="https://a.b/c")
    before = {
        "source": "url", "url": "https://a.b/c", "filename": None, "audio_sha256": None, "model": "tiny.en",
        "language": None, "task": "transcribe", "word_timestamps": False, "vad": True, "initial_prompt": None,
        "callback_url": None,
    }  # fmt: skip
    text = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert request_fingerprint(new, None) == hashlib.sha256(text.encode()).hexdigest()
    tuned = NewJob(
        source=JobSource.URL,
        options=options_from({"temperature": (0.0, 0.2)}, model="tiny.en"),
        source_url="https://a.b/c",
    )
    assert request_fingerprint(tuned, None) != request_fingerprint(new, None)


def test_what_needs_sequential_decoding() -> None:
    assert not sequential_only(DecodingOptions())
    assert not sequential_only(DecodingOptions(hotwords="x", no_speech_threshold=0.3, vad_min_silence_ms=500))
    for tuned in (
        DecodingOptions(temperature=(0.2,)),
        DecodingOptions(temperature=(0.0, 0.2)),
        DecodingOptions(condition_on_previous_text=True),
        DecodingOptions(clip_timestamps=(1.0, 2.0)),
    ):
        assert sequential_only(tuned), tuned


def test_option_text_is_what_a_form_field_says() -> None:
    assert [option_text(value) for value in ((0.0, 0.2), 0.5, True, (-1, 13), "Cesar", 400)] == [
        "0,0.2", "0.5", "true", "-1,13", "Cesar", "400"
    ]  # fmt: skip


def test_the_manual_table_is_the_one_written_from_the_declaration() -> None:
    spec = importlib.util.spec_from_file_location(
        "update_decoding_doc", ROOT / "scripts" / "update_decoding_doc.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = (ROOT / "docs" / "decoding.md").read_text(encoding="utf-8")
    assert script.updated(page) == page, "the decoding options' table is stale: run `make docs-decoding`"
    for name in DECODING_NAMES:
        assert f"| `{name}` |" in page

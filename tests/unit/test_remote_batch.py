"""The client's planning of outputs, its idempotency keys and its reading of server-sent events."""

from __future__ import annotations

from pathlib import Path

import pytest

from cesar.remote.batch import Item, expand, idempotency_key, plan_outputs
from cesar.remote.client import RemoteError, _events


def test_outputs_go_to_o_or_the_output_dir_or_stdout(tmp_path: Path) -> None:
    one = [("a/talk.mp3", False)]
    assert plan_outputs(one, (), None, ())[0].outputs == []  # stdout
    planned = plan_outputs(one, (Path("t.srt"), Path("t.json")), None, ())[0].outputs
    assert planned == [(Path("t.srt"), "srt"), (Path("t.json"), "json")]
    many = plan_outputs(
        [("a/talk.mp3", False), ("b/talk.wav", False), ("c/x.ogg", False)], (), tmp_path, ("srt",)
    )
    assert [item.outputs[0][0].name for item in many] == ["talk.mp3.srt", "talk.wav.srt", "x.srt"]
    url = plan_outputs([("https://h/p/show.mp3?sig=1", True)], (), tmp_path, ("txt", "vtt"))[0]
    assert [path.name for path, _ in url.outputs] == ["show.txt", "show.vtt"]


def test_outputs_that_cannot_be_planned_are_refused() -> None:
    with pytest.raises(RemoteError, match="-o names the output of one input"):
        plan_outputs([("a.mp3", False), ("b.mp3", False)], (Path("x.srt"),), None, ())
    with pytest.raises(RemoteError, match="name the format with the extension"):
        plan_outputs([("a.mp3", False)], (Path("out.text"),), None, ())
    with pytest.raises(RemoteError, match="same output file"):
        plan_outputs([("a/t.mp3", False), ("b/t.mp3", False)], (), Path("o"), ())


def test_globs_expand_here_and_missing_files_are_named(tmp_path: Path) -> None:
    for name in ("b.wav", "a.wav", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = expand((str(tmp_path / "*.wav"), "https://h/x.mp3", str(tmp_path / "a.wav")))
    assert found == [
        (str(tmp_path / "a.wav"), False),
        (str(tmp_path / "b.wav"), False),
        ("https://h/x.mp3", True),
    ]
    with pytest.raises(RemoteError, match="no file matches"):
        expand((str(tmp_path / "*.flac"),))
    with pytest.raises(RemoteError, match="no such file"):
        expand((str(tmp_path / "gone.wav"),))


def test_the_key_follows_name_bytes_and_options(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"one")
    item = Item(str(audio), False, [])
    key = idempotency_key(item, {"model": "tiny.en"})
    assert key == idempotency_key(item, {"model": "tiny.en"}) and key.isascii() and len(key) < 255
    assert key != idempotency_key(item, {"model": "base.en"})
    audio.write_bytes(b"two")
    assert key != idempotency_key(item, {"model": "tiny.en"})


def test_server_sent_events_are_read_whole() -> None:
    lines = ["id: 1.0", "event: job", 'data: {"status": "queued"}', "", ": keep-alive", "",
             "id: 1.1", "event: segment", 'data: {"text":', 'data: "hi"}', ""]  # fmt: skip
    assert list(_events(iter(lines))) == [
        ("1.0", "job", {"status": "queued"}),
        ("1.1", "segment", {"text": "hi"}),
    ]

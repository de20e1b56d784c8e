"""`cesar watch`'s rules on their own: which files it takes, where their outputs go and when a file
already has its subtitles."""

from __future__ import annotations

from pathlib import Path

import pytest

from cesar.watch import WatchConfig, Watcher, is_candidate, output_path


@pytest.mark.parametrize(
    ("relative", "taken"),
    [
        ("Movie (2019).mkv", True),
        ("Show/Season 1/Episode 01.MP4", True),
        ("call.wav", True),
        ("notes.txt", False),
        ("Movie (2019).en.srt", False),
        (".hidden.mp3", False),
        (".sync/inside.mp3", False),
        ("download.mkv.part", False),
        ("torrent.mkv.!qB", False),
        ("browser.mp3.crdownload", False),
        ("rsync.mp3.tmp", False),
        ("Samples/sample.mkv", False),  # --ignore Samples/*
        ("trailer.mkv", False),  # --ignore trailer.*
    ],
)
def test_which_files_are_taken(relative: str, taken: bool) -> None:
    config = WatchConfig(folders=(Path("/media"),), ignore=("Samples/*", "trailer.*"))
    assert is_candidate(Path(relative), config) is taken


def test_outputs_are_named_as_media_servers_read_them(tmp_path: Path) -> None:
    folder = tmp_path / "media"
    media = folder / "Movies" / "Movie (2019).mkv"
    beside = WatchConfig(folders=(folder,))
    assert output_path(media, folder, beside, "en", "srt") == folder / "Movies" / "Movie (2019).en.srt"
    elsewhere = WatchConfig(folders=(folder,), output_dir=tmp_path / "subs")
    assert (
        output_path(media, folder, elsewhere, "de", "vtt")
        == tmp_path / "subs" / "Movies" / "Movie (2019).de.vtt"
    )


@pytest.mark.parametrize(
    ("present", "language", "has"),
    [
        (["Movie (2019).en.srt"], None, True),
        (["Movie (2019).srt"], None, True),
        (["Movie (2019).pt-BR.srt"], None, True),
        (["Movie (2019).en.srt"], "de", False),
        (["Movie (2019).de.srt"], "de", True),
        (["Movie (2019).en.vtt"], None, False),  # the first format asked for is what counts
        (["Movie (2019) extras.en.srt"], None, False),
    ],
)
def test_a_file_with_its_subtitles_is_left(
    tmp_path: Path, present: list[str], language: str | None, has: bool
) -> None:
    folder = tmp_path / "media"
    folder.mkdir()
    media = folder / "Movie (2019).mkv"
    media.write_bytes(b"x")
    for name in present:
        (folder / name).write_text("1\n")
    options = {"language": language} if language else {}
    config = WatchConfig(folders=(folder,), options=options, state_path=tmp_path / "state.json")
    watcher = Watcher(None, config)  # type: ignore[arg-type]
    watcher._observe(media, folder, 1, media.stat().st_mtime_ns)
    assert watcher._has_outputs(watcher.files[media]) is has

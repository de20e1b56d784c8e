"""`cesar models`: adding a model on a host without internet, then using it from the CLI and the API."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import httpx
from serve_helpers import AUDIO_DIR, CESAR, cesar_env, free_port, running_serve

from cesar_common.transcription.bundled import bundled_model_dir


def cesar(
    *args: str, models_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CESAR, *args],
        env=cesar_env({"CESAR_MODELS_DIR": str(models_dir), **(env or {})}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def bundled() -> Path:
    directory = bundled_model_dir()
    assert directory is not None, "the bundled model is part of the dev install"
    return directory


def test_an_imported_model_serves_the_cli_and_the_api(tmp_path: Path) -> None:
    models = tmp_path / "models"
    imported = cesar("models", "import", str(bundled()), "--name", "newsroom-tiny", models_dir=models)
    assert imported.returncode == 0, imported.stderr
    assert (models / "newsroom-tiny" / "model.bin").is_file()
    listed = json.loads(cesar("models", "list", "--json", models_dir=models).stdout)
    entry = next(item for item in listed if item["name"] == "newsroom-tiny")
    assert entry["present"] and entry["source"] == "models dir" and entry["size_bytes"] > 10_000_000

    local = cesar(
        "transcribe", "--model", "newsroom-tiny", "-q", str(AUDIO_DIR / "speech_en.wav"), models_dir=models
    )
    assert local.returncode == 0, local.stderr
    assert "lazy" in local.stdout.lower()

    env = {"CESAR_MODELS": "newsroom-tiny", "CESAR_MODELS_DIR": str(models)}
    with running_serve(
        f"sqlite:///{tmp_path / 'cesar.db'}", log_path=tmp_path / "serve.log", workers="1", env=env
    ) as serve:
        listed_by_api = httpx.get(f"{serve.url}/v1/models").json()["data"]
        assert {"id": "newsroom-tiny", "present": True}.items() <= next(
            model for model in listed_by_api if model["id"] == "newsroom-tiny"
        ).items()
        remote = cesar(
            "submit", "--model", "newsroom-tiny", "--wait", str(AUDIO_DIR / "speech_en.flac"),
            models_dir=models, env={"CESAR_SERVER": serve.url},
        )  # fmt: skip
        assert remote.returncode == 0, remote.stderr + serve.log()[-2000:]
        assert "lazy" in remote.stdout.lower()
        job = httpx.get(f"{serve.url}/jobs", params={"limit": 1}).json()[0]
        assert job["model"] == "newsroom-tiny" and job["status"] == "completed"

    removed = cesar("models", "remove", "newsroom-tiny", models_dir=models)
    assert removed.returncode == 0 and not (models / "newsroom-tiny").exists()


def test_a_tar_gz_of_a_model_imports(tmp_path: Path) -> None:
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundled(), arcname="faster-whisper-tiny.en")
    models = tmp_path / "models"
    result = cesar("models", "import", str(archive), models_dir=models)
    assert result.returncode == 0, result.stderr
    assert (models / "tiny" / "tokenizer.json").is_file()  # named after the archive


def test_a_broken_model_directory_is_refused_with_what_it_lacks(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bundled(), broken)
    (broken / "tokenizer.json").unlink()
    models = tmp_path / "models"
    result = cesar("models", "import", str(broken), "--name", "broken", models_dir=models)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "it has no tokenizer.json" in result.stderr
    assert "Traceback" not in result.stderr and not (models / "broken").exists()
    taken = cesar("models", "import", str(bundled()), "--name", "../escape", models_dir=models)
    assert taken.returncode == 1 and "cannot name a model" in taken.stderr


def test_pull_without_the_hub_says_how_to_import(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: as on a host with no internet
    result = cesar("models", "pull", "base.en", models_dir=tmp_path / "models", env={"HF_ENDPOINT": closed})
    assert result.returncode == 2
    assert "this host seems offline" in result.stderr and "cesar models import" in result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert not list((tmp_path / "models").glob("*"))  # nothing half-downloaded is left

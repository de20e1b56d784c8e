"""`cesar models`: adding a model on a host without internet, then using it from the CLI and the API."""

from __future__ import annotations

import gzip
import json
import resource
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import httpx
from serve_helpers import AUDIO_DIR, CESAR, cesar_env, free_port, running_serve, wait_for

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


# --- archives that unpack to more than they weigh, and imports that never finish -------------------------
def zeros_archive(path: Path, model_bin_mib: int) -> Path:
    """A .tar.gz of a model directory whose model.bin is ``model_bin_mib`` MiB of zeros, in about a
    thousandth of that: one gzip member compressing 1 MiB of zeros, repeated (concatenated gzip members
    are one valid gzip stream), so even gigabytes take no time to make."""
    header = b""
    for name, data in (("config.json", b"{}"), ("tokenizer.json", b"{}"), ("vocabulary.txt", b"a\n")):
        info = tarfile.TarInfo(f"zeros/{name}")
        info.size = len(data)
        header += info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE)
    model = tarfile.TarInfo("zeros/model.bin")
    model.size = model_bin_mib * 1024 * 1024
    mebibyte = gzip.compress(bytes(1024 * 1024), mtime=0)
    with path.open("wb") as out:
        out.write(gzip.compress(header + model.tobuf(tarfile.GNU_FORMAT), mtime=0))
        for _ in range(model_bin_mib):
            out.write(mebibyte)
        out.write(gzip.compress(bytes(2 * tarfile.BLOCKSIZE), mtime=0))  # the end-of-archive blocks
    return path


def _files_of_at_most_64_mib() -> None:
    """In the child: writing past 64 MiB into any file kills it (SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024, 64 * 1024 * 1024))


def test_an_import_over_the_cap_is_refused_while_unpacking_and_leaves_nothing(tmp_path: Path) -> None:
    archive = zeros_archive(tmp_path / "zeros.tar.gz", 3 * 1024)  # 3 GiB of model.bin
    assert archive.stat().st_size < 4_000_000
    models = tmp_path / "models"
    result = subprocess.run(
        [CESAR, "models", "import", str(archive)],
        env=cesar_env({"CESAR_MODELS_DIR": str(models), "CESAR_MAX_MODEL_IMPORT_GB": "1"}),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_files_of_at_most_64_mib,  # the refusal comes before model.bin is written, not after
    )
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: ") and "unpacks to more than 1 GiB" in result.stderr
    assert "CESAR_MAX_MODEL_IMPORT_GB" in result.stderr and "Traceback" not in result.stderr
    assert list(models.iterdir()) == []  # no model, no .partial-* directory

    # a directory is measured before it is copied
    small_cap = cesar(
        "models", "import", str(bundled()), "--name", "tiny", models_dir=models,
        env={"CESAR_MAX_MODEL_IMPORT_GB": "0.01"},
    )  # fmt: skip
    assert small_cap.returncode == 1 and "holds more than 0.01 GiB" in small_cap.stderr
    assert list(models.iterdir()) == []


def killed_import(archive: Path, models: Path) -> Path:
    """Start importing ``archive``, stop the importer once model.bin is being written (SIGSTOP: it still
    holds its lock), check that `cesar models list` leaves its directory alone, then kill it (-9)."""
    importer = subprocess.Popen(
        [CESAR, "models", "import", str(archive), "--name", "zeros"],
        env=cesar_env({"CESAR_MODELS_DIR": str(models)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        written = wait_for(
            lambda: next(models.glob(".partial-zeros-*/unpacked/zeros/model.bin"), None),
            timeout=60,
            interval=0.01,
            what="the import to write model.bin",
        )
        importer.send_signal(signal.SIGSTOP)
        partial = written.parents[2]
        listed = cesar("models", "list", models_dir=models)
        assert listed.returncode == 0 and listed.stderr == "" and partial.is_dir()  # a running import's
    finally:
        importer.kill()
        importer.wait(timeout=30)
    assert partial.is_dir()
    return partial


def test_a_killed_imports_leftovers_are_removed_by_the_next_import_and_by_list(tmp_path: Path) -> None:
    archive = zeros_archive(tmp_path / "zeros.tar.gz", 1024)
    models = tmp_path / "models"

    partial = killed_import(archive, models)
    listed = cesar("models", "list", models_dir=models)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.startswith(f"removed {partial} (") and "did not finish" in listed.stderr
    assert not partial.exists() and "MODEL" in listed.stdout

    partial = killed_import(archive, models)
    imported = cesar("models", "import", str(bundled()), "--name", "tiny", models_dir=models)
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr.startswith(f"removed {partial} (")
    assert sorted(path.name for path in models.iterdir()) == ["tiny"]

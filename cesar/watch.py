"""`cesar watch`: media files dropped in folders are transcribed by a Cesar server, their subtitles and
transcripts written beside them (or under ``--output-dir``) with the names media servers read.

A file is taken once it is complete: its size and modification time unchanged for ``--settle`` seconds
(hidden files and partial downloads are never taken). It is submitted with an ``Idempotency-Key`` made of
its content hash and the options, so a restart, a second watcher or a renamed copy never queues it twice:
the server answers with the job it already has (a renamed copy's request differs by its name, and the
server's refusal names the job, which the copy then shares). A small state file keeps which job each file
has and how often it failed, so that after a restart the watcher follows the jobs it had instead of
hashing every file again; a file whose outputs exist is done, whatever the state file says.

The folders are followed through file-system events (``watchfiles``: inotify, FSEvents, ...), or by
looking at them every ``--poll`` seconds (network shares send no events), which is also the fallback when
events cannot be had. While idle, an events watcher only waits; a polling one lists the folders.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cesar.remote.batch import write_atomically
from cesar.remote.client import RemoteAPI, RemoteError
from cesar_common.errors import InvalidInputError

__all__ = [
    "MEDIA_EXTENSIONS",
    "PARTIAL_SUFFIXES",
    "WatchConfig",
    "Watcher",
    "default_state_path",
    "is_candidate",
    "output_path",
]

#: what is taken for audio or video unless --extensions says otherwise
MEDIA_EXTENSIONS = frozenset(
    {
        *(".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".amr", ".aiff", ".aif"),
        *(".webm", ".mkv", ".mp4", ".m4v", ".mov", ".avi", ".wmv", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts"),
        *(".flv", ".3gp"),
    }
)
#: partial downloads (browsers, torrent clients, rsync and curl leave these until the file is whole)
PARTIAL_SUFFIXES = (".part", ".partial", ".!qb", ".crdownload", ".download", ".tmp", ".temp", ".!ut")
KEY_PREFIX = "cesar-watch-"
#: how often the server is asked about the jobs being followed
STATUS_SECONDS = 1.0
#: how often the state file is written at most
SAVE_SECONDS = 1.0
#: the longest a language code may be in a subtitle's name (``en``, ``pt-BR``, ``yue``)
_LANGUAGE_CHARS = 8
_FINAL = frozenset({"completed", "error", "cancelled"})
#: a file's statuses that need the watcher's attention
_BUSY = ("settling", "active")


@dataclass(frozen=True)
class WatchConfig:
    folders: tuple[Path, ...]
    formats: tuple[str, ...] = ("srt",)
    output_dir: Path | None = None
    extensions: frozenset[str] = MEDIA_EXTENSIONS
    ignore: tuple[str, ...] = ()
    settle: float = 5.0
    poll: float | None = None
    once: bool = False
    dry_run: bool = False
    overwrite: bool = False
    state_path: Path | None = None
    retries: int = 2
    #: the transcription fields sent with each file (as `cesar submit` sends them)
    options: dict[str, Any] = field(default_factory=dict)


def default_state_path(folders: Iterable[Path]) -> Path:
    """The user's state folder (~/.local/state/cesar on Linux), ``watch-<hash of the folders>.json``."""
    from platformdirs import user_state_path

    names = "\0".join(sorted(str(folder.resolve()) for folder in folders))
    return user_state_path("cesar") / f"watch-{hashlib.sha256(names.encode()).hexdigest()[:16]}.json"


def is_candidate(relative: Path, config: WatchConfig) -> bool:
    """Whether a file (its path under its watched folder) is media the watcher takes."""
    name = relative.name
    if any(part.startswith(".") for part in relative.parts):
        return False
    lowered = name.lower()
    if lowered.endswith(PARTIAL_SUFFIXES) or Path(lowered).suffix not in config.extensions:
        return False
    text = relative.as_posix()
    return not any(
        fnmatch.fnmatch(text, pattern) or fnmatch.fnmatch(name, pattern) for pattern in config.ignore
    )


def output_path(media: Path, folder: Path, config: WatchConfig, language: str, fmt: str) -> Path:
    """Where a format of ``media``'s transcript goes: ``<stem>.<language>.<format>`` beside it, or under
    ``--output-dir`` at the same relative path (what Jellyfin, Plex and Emby read: ``Movie (2019).en.srt``).
    """
    where = (
        media.parent if config.output_dir is None else config.output_dir / media.parent.relative_to(folder)
    )
    return where / f"{media.stem}.{language}.{fmt}"


@dataclass
class Tracked:
    """One media file and what became of it."""

    path: Path
    folder: Path
    size: int
    mtime_ns: int
    #: when its size and modification time were last seen to change (monotonic)
    stable_since: float
    status: str = "settling"  # settling, active (a job), done, failed, skipped
    job_id: str | None = None
    digest: str | None = None
    submitted: tuple[int, int] | None = None  # (size, mtime_ns) when its job was made
    tries: int = 0
    progress: float = 0.0
    error: str | None = None
    #: the watcher's files settling or followed, kept as the status changes: an idle watcher of 10,000
    #: files looks at none of them
    busy: set[Path] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        busy = self.__dict__.get("busy")
        if name == "status" and busy is not None:
            if value in _BUSY:
                busy.add(self.path)
            else:
                busy.discard(self.path)

    @property
    def relative(self) -> str:
        return self.path.relative_to(self.folder).as_posix()


class Watcher:
    """Folders to the server and back. ``run()`` returns the exit code (``--once``) or runs until stopped."""

    def __init__(self, api: RemoteAPI, config: WatchConfig, *, out: Any = None, err: Any = None) -> None:
        self.api = api
        self.config = config
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.files: dict[Path, Tracked] = {}
        self._by_text: dict[str, Tracked] = {}
        self._busy: set[Path] = set()
        self.failures = 0
        self.done = 0
        self.skipped = 0
        self._events: queue.SimpleQueue[set[Path] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._listeners: dict[Path, set[str]] = {}
        self._dirty = False
        self._saved_at = 0.0
        self._asked_at = 0.0
        self._state_path = config.state_path or default_state_path(config.folders)
        self._remembered = self._load_state()

    # --- the loop -------------------------------------------------------------------------------------
    def run(self) -> int:
        for folder in self.config.folders:
            if not folder.is_dir():
                raise InvalidInputError(f"{folder} is not a folder")
        polling = self.config.poll is not None
        if not polling and not self.config.once:
            polling = not self._start_events()
        self._scan_all()
        rescanned_at = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                changed = self._drain_events()
                if changed is None:  # the events thread gave up: poll from now on
                    polling = True
                    changed = set()
                if polling and now - rescanned_at >= (self.config.poll or 10.0):
                    self._scan_all()
                    rescanned_at = now
                for path in changed:
                    self._look(path)
                self._settle()
                self._follow()
                self._save()
                if self.config.once and not self._busy:
                    break
                self._stop.wait(0.2)
        finally:
            self._stop.set()
            self._save(force=True)
        if self.config.once:
            self._say(f"{self.done} done, {self.failures} failed, {self.skipped} already had their outputs")
        return 5 if self.failures else 0

    def stop(self) -> None:
        self._stop.set()

    # --- finding files --------------------------------------------------------------------------------
    def _start_events(self) -> bool:
        """Follow the folders' events in a thread; False when events cannot be had (then: polling)."""
        try:
            import watchfiles
        except ImportError:  # pragma: no cover - a dependency, but polling works without it
            return False
        ready = threading.Event()
        failed: list[BaseException] = []

        def follow() -> None:
            try:
                for changes in watchfiles.watch(
                    *self.config.folders, stop_event=self._stop, yield_on_timeout=False, debounce=200, step=50
                ):
                    ready.set()
                    self._events.put({Path(path) for _change, path in changes})
            except Exception as exc:  # no events here (a limit reached, a file system without them)
                failed.append(exc)
                self._events.put(None)
            finally:
                ready.set()

        threading.Thread(target=follow, name="cesar-watch-events", daemon=True).start()
        ready.wait(0.5)  # an early failure shows here; a watch that works simply has nothing to say yet
        if failed:
            self._warn(f"file-system events unavailable ({failed[0]}): looking at the folders every 10 s")
            return False
        return True

    def _drain_events(self) -> set[Path] | None:
        changed: set[Path] = set()
        while True:
            try:
                batch = self._events.get_nowait()
            except queue.Empty:
                return changed
            if batch is None:
                self._warn("file-system events stopped: looking at the folders every 10 s")
                return None
            changed |= batch

    def _scan_all(self) -> None:
        """Every folder looked at again (the polling mode's turn): a known file unchanged costs a look up
        by its path's text, no more (a polling watcher of 10,000 files does this every --poll seconds)."""
        seen: set[str] = set()
        for folder in self.config.folders:
            for text, stat in _walk(folder, self.config.extensions):
                seen.add(text)
                known = self._by_text.get(text)
                if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                    continue
                self._observe(Path(text), folder, stat.st_size, stat.st_mtime_ns)
        for text in self._by_text.keys() - seen:
            self._gone(Path(text))

    def _look(self, path: Path) -> None:
        """A path an event named: a file again, a new one, or gone; a folder is looked into."""
        folder = self._folder_of(path)
        if folder is None:
            return
        try:
            stat = path.stat()
        except OSError:
            for known in [known for known in self.files if known == path or path in known.parents]:
                self._gone(known)
            return
        if path.is_dir():
            for inner, inner_stat in _walk(path, self.config.extensions):
                self._observe(Path(inner), folder, inner_stat.st_size, inner_stat.st_mtime_ns)
            return
        self._observe(path, folder, stat.st_size, stat.st_mtime_ns)

    def _folder_of(self, path: Path) -> Path | None:
        for folder in self.config.folders:
            if path == folder or folder in path.parents:
                return folder
        return None

    def _observe(self, path: Path, folder: Path, size: int, mtime_ns: int) -> None:
        if not is_candidate(path.relative_to(folder), self.config):
            return
        known = self.files.get(path)
        if known is not None:
            if (known.size, known.mtime_ns) != (size, mtime_ns):
                known.size, known.mtime_ns = size, mtime_ns
                known.stable_since = time.monotonic()
                if known.status in ("done", "failed", "skipped"):
                    known.status, known.tries, known.error = "settling", 0, None
            return
        # unchanged since it was last written, as far as anyone can tell
        age = max(time.time() - mtime_ns / 1e9, 0.0)
        item = Tracked(path, folder, size, mtime_ns, stable_since=time.monotonic() - age, busy=self._busy)
        self._busy.add(path)
        self.files[path] = item
        self._by_text[str(path)] = item
        remembered = self._remembered.pop(str(path), None)
        if remembered and (remembered.get("size"), remembered.get("mtime_ns")) == (size, mtime_ns):
            item.digest = remembered.get("digest")
            item.tries = int(remembered.get("tries") or 0)
            if remembered.get("status") == "active" and remembered.get("job_id"):
                item.status, item.job_id, item.submitted = "active", remembered["job_id"], (size, mtime_ns)
            elif remembered.get("status") == "failed" and item.tries > self.config.retries:
                item.status, item.error = "failed", remembered.get("error")

    def _gone(self, path: Path) -> None:
        item = self.files.pop(path, None)
        self._by_text.pop(str(path), None)
        self._busy.discard(path)
        if item is not None and item.status == "active" and item.job_id:
            self._cancel(item)
            self._say(f"gone {item.relative}: its job {item.job_id} is cancelled")
        self._dirty = True

    # --- complete files to jobs -----------------------------------------------------------------------
    def _settle(self) -> None:
        now = time.monotonic()
        for item in self._attending("settling"):
            try:
                stat = item.path.stat()
            except OSError:
                self._gone(item.path)
                continue
            if (stat.st_size, stat.st_mtime_ns) != (item.size, item.mtime_ns):
                item.size, item.mtime_ns, item.stable_since = stat.st_size, stat.st_mtime_ns, now
                continue
            if now - item.stable_since < self.config.settle:
                continue
            if not self.config.overwrite and self._has_outputs(item):
                item.status = "skipped"
                self.skipped += 1
                continue
            if self.config.dry_run:
                item.status = "skipped"
                self._say(f"would submit {item.relative}")
                continue
            self._submit(item)

    def _has_outputs(self, item: Tracked) -> bool:
        """Whether the file has its first format already: in the language asked for, or in any."""
        fmt = self.config.formats[0]
        language = self.config.options.get("language")
        where = output_path(item.path, item.folder, self.config, "xx", fmt).parent
        if language:
            return output_path(item.path, item.folder, self.config, language, fmt).exists()
        suffix = f".{fmt}"
        try:
            names = os.listdir(where)
        except OSError:
            return False
        for name in names:
            if not name.startswith(f"{item.path.stem}.") or not name.endswith(suffix):
                continue
            middle = name[len(item.path.stem) + 1 : -len(suffix)]
            if middle == "" or (len(middle) <= _LANGUAGE_CHARS and "." not in middle and middle.strip()):
                return True
        return False

    def _submit(self, item: Tracked) -> None:
        try:
            item.digest = item.digest or _content_hash(item.path)
            sig = (item.size, item.mtime_ns)
            key = _key(item.digest, self.config.options, item.tries)
            with item.path.open("rb") as handle:
                response = self.api.request(
                    "POST",
                    "/transcribe",
                    rewind=handle,
                    files={"file": (item.path.name, handle)},
                    data={name: _field(value) for name, value in self.config.options.items()},
                    headers={"Idempotency-Key": key},
                    answers=frozenset({422}),
                )
            body = response.json()
            if response.status_code == 422:
                # the same bytes under another name: the job the key names is theirs too
                job_id = (body.get("extra") or {}).get("job_id")
                if body.get("code") != "idempotency_key_reused" or not job_id:
                    raise RemoteError(f"{body.get('detail', 'refused')} (422)", 1, status=422)
            else:
                job_id = body["id"]
        except OSError as exc:
            self._failed(item, f"cannot read it: {exc}")
            return
        except RemoteError as exc:
            if exc.status is None or exc.status >= 500 or exc.status in (401, 408, 429):
                if self.config.once:  # a cron run says so and ends (the exit code of `cesar submit`)
                    raise
                self._warn(f"{item.relative}: {exc} (tried again later)")
                item.stable_since = time.monotonic()  # a pause before the next try
                return
            self._failed(item, str(exc), for_good=True)
            return
        item.status, item.job_id, item.submitted, item.progress = "active", job_id, sig, 0.0
        self._dirty = True

    # --- jobs to outputs ------------------------------------------------------------------------------
    def _follow(self) -> None:
        active = self._attending("active")
        now = time.monotonic()
        if not active or now - self._asked_at < STATUS_SECONDS:
            return
        self._asked_at = now
        try:
            jobs = self._jobs({item.job_id for item in active if item.job_id})
        except RemoteError as exc:
            if self.config.once:
                raise
            self._warn(f"cannot follow the jobs: {exc} (tried again)")
            return
        for item in active:
            if not self._unchanged(item):
                continue
            job = jobs.get(item.job_id or "")
            if job is None:
                self._failed(item, f"its job {item.job_id} is gone from the server")
                continue
            status = job.get("status")
            if status == "completed":
                self._write(item, job)
            elif status in _FINAL:
                self._failed(item, job.get("error_message") or f"its job ended {status}")
            elif self.tty and job.get("progress", 0) >= item.progress + 0.1:
                item.progress = float(job["progress"])
                self._warn(f"{item.relative}: {item.progress:.0%}")

    def _jobs(self, wanted: set[str]) -> dict[str, dict[str, Any]]:
        """The jobs of ``wanted`` as the server has them: one listing, then one read each for the rest."""
        # the newest jobs hold the ones just submitted; a key sees only its own, an admin everyone's
        listed = self.api.json("GET", "/jobs", params={"limit": min(1000, 50 + 2 * len(wanted))})
        found = {job["id"]: job for job in listed if job.get("id") in wanted}
        for job_id in wanted - set(found):
            response = self.api.request("GET", f"/jobs/{job_id}", answers=frozenset({404}))
            if response.status_code == 200:
                found[job_id] = response.json()
        return found

    def _unchanged(self, item: Tracked) -> bool:
        """Whether the file is still what was submitted; changed: its job is cancelled, it settles again."""
        try:
            stat = item.path.stat()
        except OSError:
            self._gone(item.path)
            return False
        if (stat.st_size, stat.st_mtime_ns) == item.submitted:
            return True
        self._cancel(item)
        self._say(
            f"changed {item.relative}: its job {item.job_id} is cancelled; transcribed again once complete"
        )
        item.size, item.mtime_ns, item.stable_since = stat.st_size, stat.st_mtime_ns, time.monotonic()
        item.status, item.job_id, item.digest, item.submitted, item.tries = "settling", None, None, None, 0
        self._dirty = True
        return False

    def _write(self, item: Tracked, job: dict[str, Any]) -> None:
        language = job.get("detected_language") or self.config.options.get("language") or "und"
        written: list[Path] = []
        try:
            for fmt in self.config.formats:
                target = output_path(item.path, item.folder, self.config, language, fmt)
                write_atomically(target, self.api.transcript(str(item.job_id), fmt))
                written.append(target)
        except (OSError, RemoteError) as exc:
            self._failed(item, f"cannot write its outputs: {exc}")
            return
        item.status = "done"
        self.done += 1
        self._dirty = True
        names = ", ".join(_shown(target, item) for target in written)
        self._say(f"done {item.relative} -> {names}")

    def _failed(self, item: Tracked, reason: str, *, for_good: bool = False) -> None:
        """A try failed: tried again (a pause first) while tries are left, unless ``for_good`` (a refusal
        the same file would get again: not audio, too long)."""
        item.tries += 1
        item.error = reason
        item.job_id = None
        self._dirty = True
        if item.tries <= self.config.retries and not for_good:
            self._warn(f"{item.relative}: {reason} (try {item.tries + 1} of {self.config.retries + 1} next)")
            item.status = "settling"
            item.stable_since = time.monotonic()  # the next try after a --settle pause
            return
        item.status = "failed"
        self.failures += 1
        self._say(f"failed {item.relative}: {reason}")

    def _cancel(self, item: Tracked) -> None:
        with contextlib.suppress(RemoteError):
            self.api.request("POST", f"/jobs/{item.job_id}/cancel", answers=frozenset({404, 409}))

    def _attending(self, status: str) -> list[Tracked]:
        return [item for path in list(self._busy) if (item := self.files[path]).status == status]

    # --- the state file -------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self._warn(f"the state file {self._state_path} cannot be read ({exc}): starting afresh")
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def _save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._dirty or self.config.dry_run or (not force and now - self._saved_at < SAVE_SECONDS):
            return
        files = {
            str(item.path): {
                "status": item.status,
                "job_id": item.job_id,
                "digest": item.digest,
                "size": item.size,
                "mtime_ns": item.mtime_ns,
                "tries": item.tries,
                "error": item.error,
            }
            for item in self.files.values()
            if item.status in ("active", "failed") or item.tries
        }
        try:
            write_atomically(self._state_path, json.dumps({"version": 1, "files": files}, indent=1))
        except OSError as exc:
            self._warn(f"cannot write the state file {self._state_path}: {exc}")
        self._saved_at = now
        self._dirty = False

    # --- saying what happens --------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        click.echo(line, file=self.out)

    def _warn(self, line: str) -> None:
        click.echo(line, file=self.err)


def _walk(folder: Path, extensions: frozenset[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Every file below ``folder`` with one of ``extensions``, as its path's text and its stat (hidden
    files and folders are not looked at; others are told apart by name before any stat)."""
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif os.path.splitext(entry.name)[1].lower() in extensions and entry.is_file():
                            yield entry.path, entry.stat()
                    except OSError:
                        continue
        except OSError:
            continue


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _key(digest: str, options: dict[str, Any], tries: int) -> str:
    """The Idempotency-Key of a file's content with these options (a retry after a failure: a new one)."""
    text = json.dumps(options, sort_keys=True) + digest + (f"/{tries}" if tries else "")
    return KEY_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:48]


def _field(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(part) for part in value)
    return str(value)


def _shown(target: Path, item: Tracked) -> str:
    try:
        return target.relative_to(item.folder).as_posix()
    except ValueError:
        return str(target)


def run_watch(
    folders: tuple[Path, ...],
    *,
    job: dict[str, Any],
    model: str | None,
    formats: tuple[str, ...],
    output_dir: Path | None,
    extensions: tuple[str, ...],
    ignore: tuple[str, ...],
    settle: float,
    poll: float | None,
    once: bool,
    dry_run: bool,
    overwrite: bool,
    state: Path | None,
    retries: int,
    server: str | None,
    api_key: str | None,
    verbose: bool,
) -> None:
    """`cesar watch`: until Ctrl-C (exit 130), or with ``once`` until what was there is done (exit 0, or 5
    when a file failed)."""
    from cesar.remote.commands import connected, sent_options
    from cesar_common.exits import fail

    with connected(server, api_key, verbose=verbose) as api:
        if "rttm" in formats and not job.get("diarize"):
            raise InvalidInputError("rttm is the speaker turns: it needs --diarize")
        config = WatchConfig(
            folders=tuple(folder.resolve() for folder in folders),
            formats=formats or ("srt",),
            output_dir=None if output_dir is None else output_dir.resolve(),
            extensions=_extensions(extensions) if extensions else MEDIA_EXTENSIONS,
            ignore=ignore,
            settle=settle,
            poll=poll,
            once=once,
            dry_run=dry_run,
            overwrite=overwrite,
            state_path=state,
            retries=retries,
            options=sent_options(job, model),
        )
        watcher = Watcher(api, config)
        # `docker stop` and service managers send SIGTERM: the watcher ends its turn and saves its state
        previous = signal.signal(signal.SIGTERM, lambda _signal, _frame: watcher.stop())
        try:
            code = watcher.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    if code:
        fail("some files failed (their lines above say why)", code)


def _extensions(given: tuple[str, ...]) -> frozenset[str]:
    names = {part.strip().lower() for value in given for part in value.split(",") if part.strip()}
    return frozenset(name if name.startswith(".") else f".{name}" for name in names)

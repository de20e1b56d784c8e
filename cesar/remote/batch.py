"""`cesar submit`: files, globs and URLs to a server, N at a time; with ``--wait``, followed to their end and
their transcripts written.

Safe to run again: each submit carries an ``Idempotency-Key`` made from the file's name, its bytes (or the
URL) and the options, so after a crash or Ctrl-C the same command finds the jobs it already made (the
server answers ``200`` with the existing job for 24 hours) instead of making new ones, and writes the
outputs of those that finished meanwhile.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cesar.remote.client import EXIT_JOB_FAILED, EXIT_REFUSED, RemoteAPI, RemoteError
from cesar_common.choices import TRANSCRIPT_FORMATS
from cesar_common.db.records import FINAL_STATUSES, JobStatus

__all__ = [
    "Batch",
    "Item",
    "expand",
    "idempotency_key",
    "plan_outputs",
    "result_json",
    "summary",
    "write_atomically",
]

FINAL = frozenset(str(status) for status in FINAL_STATUSES)
KEY_PREFIX = "cesar-submit-"


@dataclass
class Item:
    """One file or URL of the batch, and what became of it."""

    source: str
    is_url: bool
    outputs: list[tuple[Path, str]]  # (where, format); empty: the transcript goes to stdout
    job_id: str | None = None
    status: str = "pending"  # not submitted yet (the server's own statuses once it is)
    duration: float | None = None
    wall: float | None = None
    error: RemoteError | None = None
    text: str | None = None  # the transcript, when it goes to stdout

    @property
    def name(self) -> str:
        return self.source if self.is_url else Path(self.source).name


def expand(sources: tuple[str, ...]) -> list[tuple[str, bool]]:
    """Files, globs (expanded here, so they work in any shell) and URLs, in order, each once."""
    found: list[tuple[str, bool]] = []
    for source in sources:
        if source.startswith(("http://", "https://")):
            found.append((source, True))
            continue
        matches = sorted(glob.glob(os.path.expanduser(source))) if glob.has_magic(source) else [source]
        if not matches:
            raise RemoteError(f"{source}: no file matches", EXIT_REFUSED)
        for match in matches:
            if not Path(match).is_file():
                raise RemoteError(f"{match}: no such file", EXIT_REFUSED)
            found.append((match, False))
    return list(dict.fromkeys(found))


def plan_outputs(
    sources: list[tuple[str, bool]],
    outputs: tuple[Path, ...],
    output_dir: Path | None,
    formats: tuple[str, ...],
) -> list[Item]:
    """Where each transcript goes: ``-o`` files (one input), else ``DIR/<stem>.<format>`` (many inputs or
    ``--output-dir``), else stdout (one input)."""
    if outputs and len(sources) != 1:
        raise RemoteError("-o names the output of one input: for several, use --output-dir", EXIT_REFUSED)
    chosen = formats or ("txt",)
    names = [Path(source.split("?")[0].rstrip("/")).name or "transcript" for source, _ in sources]
    stems = [Path(name).stem or name for name in names]
    items = []
    for (source, is_url), name, stem in zip(sources, names, stems, strict=True):
        if outputs:
            planned = [(path, formats[0] if formats else _format_of(path)) for path in outputs]
        elif output_dir is not None or len(sources) > 1:
            base = (
                stem if stems.count(stem) == 1 else name
            )  # talk.mp3 and talk.wav: talk.mp3.srt, talk.wav.srt
            planned = [((output_dir or Path()) / f"{base}.{fmt}", fmt) for fmt in chosen]
        else:
            planned = []
        items.append(Item(source, is_url, planned))
    targets = [path.resolve() for item in items for path, _ in item.outputs]
    if len(set(targets)) != len(targets):
        raise RemoteError(
            "two inputs would write the same output file: give them different names", EXIT_REFUSED
        )
    return items


def _format_of(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in TRANSCRIPT_FORMATS:
        raise RemoteError(
            f"-o {path}: name the format with the extension ({', '.join(TRANSCRIPT_FORMATS)}) or --format",
            EXIT_REFUSED,
        )
    return fmt


def idempotency_key(item: Item, options: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(options, sort_keys=True).encode())
    if item.is_url:
        digest.update(b"url\0" + item.source.encode())
    else:
        digest.update(b"file\0" + Path(item.source).name.encode() + b"\0")
        with open(item.source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return KEY_PREFIX + digest.hexdigest()[:48]


class Batch:
    """Submits the items ``parallel`` at a time; with ``wait``, follows each to its end."""

    def __init__(
        self,
        api: RemoteAPI,
        items: list[Item],
        options: dict[str, Any],
        *,
        print_format: str,
        wait: bool,
        parallel: int,
        console: Console,
        on_submitted: Callable[[Item], None],
    ) -> None:
        self.api, self.items, self.options = api, items, options
        self.print_format = print_format
        self.wait, self.parallel = wait, parallel
        self.console = console
        self.on_submitted = on_submitted
        self._lock = threading.Lock()
        self.progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            TextColumn("{task.fields[state]}"),
            DownloadColumn(binary_units=True),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )

    def run(self) -> list[Item]:
        """Every item, ``parallel`` at a time. Daemon threads, joined with a timeout: Ctrl-C reaches this
        thread at once and the command exits without waiting for uploads or jobs (its jobs go on; the
        same command picks them up)."""
        pending: queue.SimpleQueue[Item] = queue.SimpleQueue()
        for item in self.items:
            pending.put(item)

        def drain() -> None:
            while True:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    return
                self._one(item)

        threads = [
            threading.Thread(target=drain, name=f"submit-{number}", daemon=True)
            for number in range(min(self.parallel, len(self.items)))
        ]
        with self.progress:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        return self.items

    def _one(self, item: Item) -> None:
        started = time.monotonic()
        task = self.progress.add_task(item.name[-40:], total=None, state="hashing")
        try:
            self._submit(item, task)
            if self.wait:
                self._follow(item, task)
                if item.status == JobStatus.COMPLETED:
                    self._write(item)
        except RemoteError as exc:
            item.error = exc
            item.status = "failed" if item.job_id is None else item.status
        finally:
            item.wall = time.monotonic() - started
            self.progress.update(task, state=item.status)

    def _submit(self, item: Item, task: TaskID) -> None:
        key = idempotency_key(item, self.options)
        if item.is_url:
            job = self.api.submit_url(item.source, self.options, key=key)
        else:
            size = Path(item.source).stat().st_size
            self.progress.update(task, total=size, state="uploading")
            job = self.api.submit_file(
                Path(item.source),
                {
                    name: str(value).lower() if isinstance(value, bool) else str(value)
                    for name, value in self.options.items()
                },
                key=key,
                uploaded=lambda done: self.progress.update(task, completed=done),
            )
        item.job_id, item.status, item.duration = job["id"], job["status"], job.get("duration")
        self.progress.update(task, total=100, completed=100 * (job.get("progress") or 0), state=item.status)
        with self._lock:
            self.on_submitted(item)

    def _follow(self, item: Item, task: TaskID) -> None:
        assert item.job_id is not None
        if item.status in FINAL:  # a re-run: the job ended while this client was away
            job = self.api.json("GET", f"/jobs/{item.job_id}")
        else:
            job = {}
            for kind, data in self.api.follow(item.job_id):
                if kind in ("job", "end"):
                    job = data
                    self.progress.update(
                        task, completed=100 * (data.get("progress") or 0), state=data["status"]
                    )
        item.status, item.duration = job["status"], job.get("duration")
        if item.status != JobStatus.COMPLETED:
            detail = job.get("error_message") or item.status
            item.error = RemoteError(f"job {item.job_id} ended {item.status}: {detail}", EXIT_JOB_FAILED)

    def _write(self, item: Item) -> None:
        assert item.job_id is not None
        if not item.outputs:
            item.text = self.api.transcript(item.job_id, self.print_format)
            return
        for path, fmt in item.outputs:
            write_atomically(path, self.api.transcript(item.job_id, fmt))


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            # mkstemp makes it private; an output is as readable as any file the user makes (a media
            # server reading subtitles runs as another user)
            os.fchmod(out.fileno(), 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@functools.cache
def _umask() -> int:
    # read once: os.umask can only be read by setting it, which races with other threads making files
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def summary(items: list[Item]) -> Table:
    table = Table(title=None, box=None, pad_edge=False)
    for column in ("FILE", "STATUS", "AUDIO", "WALL", "JOB"):
        table.add_column(column, no_wrap=column != "FILE")
    for item in items:
        audio = "" if item.duration is None else f"{item.duration:.1f} s"
        wall = "" if item.wall is None else f"{item.wall:.1f} s"
        table.add_row(item.name, item.status, audio, wall, item.job_id or "")
    return table


def result_json(item: Item) -> dict[str, Any]:
    return {
        "source": item.source,
        "job_id": item.job_id,
        "status": item.status,
        "duration": item.duration,
        "wall_seconds": None if item.wall is None else round(item.wall, 3),
        "outputs": [str(path) for path, _ in item.outputs] if item.status == JobStatus.COMPLETED else [],
        "error": None if item.error is None else item.error.message,
    }

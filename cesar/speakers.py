"""What `cesar speakers` does: the voice library of the local database, or of a Cesar server (``--server``).

The Click commands in ``cesar.cli.speakers`` only parse options and call the ``run_*`` functions here.
Locally, an audio sample's voice print is read in this process (the worker's own
:func:`~cesar_worker.speaker_names.read_sample`) and stored at once; on a server, a worker there reads it
and the command waits for it. Both libraries hand out people as the API shows them (``GET /speakers/{id}``),
so a command prints the same whichever it acts on, and ``--json`` prints what the API answers.

Also here: the library ``cesar transcribe --diarize`` names voices from (:func:`local_library`), read from
the local database without ever creating it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
from rich.console import Console

from cesar.remote.client import EXIT_JOB_FAILED, RemoteAPI, RemoteError
from cesar.remote.commands import connected, print_table
from cesar.transcribe_file import check_input
from cesar.where import Where, open_store
from cesar_common.db.voice_library import check_name
from cesar_common.errors import DatabaseError, InvalidInputError, NotFoundError, SchemaOutdatedError
from cesar_common.settings import get_settings

if TYPE_CHECKING:
    from cesar_common.db.records import SpeakerRecord
    from cesar_common.db.store import JobStore
    from cesar_common.diarization.library import Library
    from cesar_common.job_options import TranscribeOptions
    from cesar_common.transcription.result import TranscriptionResult

__all__ = [
    "local_library",
    "name_voices",
    "run_add",
    "run_list",
    "run_remove",
    "run_rename",
    "run_show",
]

#: a person as ``GET /speakers/{id}`` shows them: id, name, created_at, updated_at, samples
Person = dict[str, Any]
#: seconds between two looks at a sample a server's worker is reading (growing to the second)
POLL_SECONDS = (0.2, 0.3, 0.5, 1.0)


# --- which library --------------------------------------------------------------------------------------
class VoiceLibrary(Protocol):
    """What each command asks of a library (``existing``: the person of that name, None if new)."""

    def people(self) -> list[Person]: ...

    def add_sample(self, name: str, path: Path, existing: Person | None, *, wait: bool) -> Person: ...

    def add_job_voice(self, name: str, job_id: str, label: str, existing: Person | None) -> Person: ...

    def rename(self, person_id: str, name: str) -> Person: ...

    def remove(self, person_id: str) -> None: ...


@contextmanager
def _library(place: Where, *, verbose: bool) -> Iterator[VoiceLibrary]:
    if place.server is None:
        local = LocalLibrary(get_settings(database_url=place.database_url).database_url)
        try:
            yield local
        finally:
            local.close()
        return
    with connected(place.server, place.api_key, verbose=verbose) as api:
        yield ServerLibrary(api)


def _key(name: str) -> str:
    """How names compare: spaces collapsed, case folded (as the library keeps them unique)."""
    return " ".join(name.split()).casefold()


def _find(people: list[Person], name: str) -> Person | None:
    return next((person for person in people if _key(person["name"]) == _key(name)), None)


def _pick(people: list[Person], who: str) -> Person:
    """The person whose id is ``who``, else whose name is."""
    found = next((person for person in people if person["id"] == who.strip()), None) or _find(people, who)
    if found is None:
        raise NotFoundError(
            f"nobody named {who.strip()!r} in the voice library (`cesar speakers list` shows who is)"
        )
    return found


def _new_sample(person: Person, before: Collection[str]) -> dict[str, Any] | None:
    """The voice print of ``person`` whose id is not among ``before`` (the one just added; None when
    nothing was: a job's voice they had already)."""
    return next((sample for sample in reversed(person["samples"]) if sample["id"] not in before), None)


# --- the local database -----------------------------------------------------------------------------------
def person_json(record: SpeakerRecord) -> Person:
    """A person of the store as the API shows them."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    return plain(asdict(record))  # type: ignore[no-any-return]


class LocalLibrary:
    """The voice library of the local job database. A SQLite file that does not exist is an empty library,
    made by the first person added."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._store: JobStore | None = None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def _opened(self, *, create: bool = False) -> JobStore | None:
        if self._store is None:
            self._store = open_store(self.database_url, create=create)
        return self._store

    def people(self) -> list[Person]:
        store = self._opened()
        return [] if store is None else [person_json(record) for record in store.list_speakers()]

    def add_sample(self, name: str, path: Path, existing: Person | None, *, wait: bool) -> Person:
        from cesar_worker.speaker_names import MAX_SAMPLE_SECONDS, read_sample

        name = check_name(name)
        source = check_input(path)
        try:
            with Console(stderr=True).status(f"Reading a voice print from {source.name}...", spinner="dots"):
                read = read_sample(source, max_seconds=MAX_SAMPLE_SECONDS, should_stop=lambda: False)
        except InvalidInputError as exc:  # too little speech, several voices: said as a server says it
            raise InvalidInputError(f"{source.name}: {exc.message}", extra=exc.extra) from exc
        store = self._opened(create=True)
        assert store is not None
        return person_json(store.add_read_sample(name, read.vector, read.seconds, source.name))

    def add_job_voice(self, name: str, job_id: str, label: str, existing: Person | None) -> Person:
        store = self._opened()
        if store is None:
            raise NotFoundError(f"no job {job_id}: the database holds no jobs yet")
        if existing is None:
            return person_json(store.create_speaker(name, job_id=job_id, label=label))
        return person_json(store.update_speaker(existing["id"], add=[(job_id, label)]))

    def rename(self, person_id: str, name: str) -> Person:
        store = self._opened()
        assert store is not None  # the person was found in it
        return person_json(store.update_speaker(person_id, name=name))

    def remove(self, person_id: str) -> None:
        store = self._opened()
        assert store is not None
        store.delete_speaker(person_id)


def local_library(database_url: str, options: TranscribeOptions) -> Library | None:
    """The voice prints a local diarized transcription is named from (the worker's query): None when it is
    not to be named, nobody it may name has a print, or the database does not exist (never made for this).
    A database that cannot be read is said in one line on stderr, and the speakers keep their labels."""
    if not (options.diarize and options.name_speakers):
        return None
    from cesar_worker.speaker_names import library_for

    try:
        store = open_store(database_url, create=False)
        if store is None:
            return None
        try:
            return library_for(store, options, "")
        finally:
            store.close()
    except (DatabaseError, SchemaOutdatedError) as exc:
        # the transcript is what was asked for: it comes, with the labels, and this line says why
        click.echo(f"voice library not read ({exc.message}): speakers keep their labels", err=True)
        return None


def name_voices(
    result: TranscriptionResult, library: Library | None
) -> tuple[TranscriptionResult, list[dict[str, Any]]]:
    """A diarized ``result`` with the voices ``library`` knows named (segments and words), and its speakers
    saying which label is whom and how close (:func:`~cesar_common.diarization.naming.name_speakers`)."""
    from cesar_common.diarization.naming import name_speakers
    from cesar_common.transcription.result import Segment

    if library is None or not result.diarized:
        return result, []
    segments, speakers = name_speakers(result.segments_as_dicts(), result.voices, library)
    named = tuple(Segment.from_dict(segment, default_id=index) for index, segment in enumerate(segments))
    return dataclasses.replace(result, segments=named), speakers


# --- a server ---------------------------------------------------------------------------------------------
class ServerLibrary:
    """The voice library of a Cesar server (``/speakers``)."""

    def __init__(self, api: RemoteAPI) -> None:
        self.api = api

    def people(self) -> list[Person]:
        return self.api.json("GET", "/speakers")["speakers"]  # type: ignore[no-any-return]

    def add_sample(self, name: str, path: Path, existing: Person | None, *, wait: bool) -> Person:
        import httpx

        name = check_name(name)
        source = check_input(path)
        before = {sample["id"] for sample in (existing or {}).get("samples", [])}
        with source.open("rb") as handle:
            person: Person = self.api.json(
                "POST",
                "/speakers" if existing is None else f"/speakers/{existing['id']}/samples",
                files={"file": (source.name, handle)},
                data={} if existing is not None else {"name": name},
                rewind=handle,
                timeout=httpx.Timeout(30.0, write=300.0),
            )
        if not wait:
            return person
        sample = _new_sample(person, before)
        assert sample is not None  # an audio sample is always a new print
        person = self._read(person["id"], sample["id"], source.name)
        sample = _new_sample(person, before)
        assert sample is not None  # _read found it
        if sample["status"] == "error":
            self._forget(person, sample["id"], made=existing is None)
            raise RemoteError(f"{source.name}: {sample['error']}", EXIT_JOB_FAILED)
        return person

    def _read(self, person_id: str, sample_id: str, filename: str) -> Person:
        """The person once the server's worker has read their sample ``sample_id``."""
        pauses = itertools.chain(POLL_SECONDS, itertools.repeat(POLL_SECONDS[-1]))
        with Console(stderr=True).status(f"Waiting for a worker to read {filename}...", spinner="dots"):
            while True:
                person: Person = self.api.json("GET", f"/speakers/{person_id}")
                sample = next((s for s in person["samples"] if s["id"] == sample_id), None)
                if sample is None:
                    raise NotFoundError(f"the voice sample {filename} was removed before it was read")
                if sample["status"] != "pending":
                    return person
                time.sleep(next(pauses))

    def _forget(self, person: Person, sample_id: str, *, made: bool) -> None:
        """A sample that made no print leaves nothing behind, as a local one does: the print, and the
        person this command made for it."""
        if made and len(person["samples"]) == 1:
            self.api.request("DELETE", f"/speakers/{person['id']}")
        else:
            self.api.request("DELETE", f"/speakers/{person['id']}/samples/{sample_id}")

    def add_job_voice(self, name: str, job_id: str, label: str, existing: Person | None) -> Person:
        if existing is None:
            voice = {"name": name, "job_id": job_id, "label": label}
            return self.api.json("POST", "/speakers", json=voice)  # type: ignore[no-any-return]
        voice = {"job_id": job_id, "label": label}
        return self.api.json("POST", f"/speakers/{existing['id']}/samples", json=voice)  # type: ignore[no-any-return]

    def rename(self, person_id: str, name: str) -> Person:
        return self.api.json("PATCH", f"/speakers/{person_id}", json={"name": name})  # type: ignore[no-any-return]

    def remove(self, person_id: str) -> None:
        self.api.request("DELETE", f"/speakers/{person_id}")


# --- the commands -----------------------------------------------------------------------------------------
def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _ready(person: Person) -> list[dict[str, Any]]:
    return [sample for sample in person["samples"] if sample["status"] == "ready"]


def _speech(samples: list[dict[str, Any]]) -> str:
    return f"{sum(sample['seconds'] or 0.0 for sample in samples):.1f} s"


def _prints(count: int) -> str:
    return f"{count} voice print{'' if count == 1 else 's'}"


def _origin(sample: dict[str, Any]) -> str:
    if sample["source"] == "job":
        return f"{sample['label']} of job {sample['job_id']}"
    return str(sample["filename"] or "an audio sample")


def run_add(
    name: str,
    path: Path | None,
    *,
    job_id: str | None,
    label: str | None,
    wait: bool,
    place: Where,
    as_json: bool,
    verbose: bool,
) -> None:
    """A voice print for ``name`` (a new person, or one more print of theirs): from the audio sample at
    ``path``, or the voice ``label`` of the diarized job ``job_id``."""
    if (path is None) == (job_id is None):
        raise InvalidInputError("give an audio sample (FILE) or a diarized job's speaker (--job and --label)")
    if (job_id is None) != (label is None):
        raise InvalidInputError("a diarized job's speaker takes both --job ID and --label SPEAKER_nn")
    with _library(place, verbose=verbose) as library:
        existing = _find(library.people(), name)
        before = {sample["id"] for sample in (existing or {}).get("samples", [])}
        if path is not None:
            person = library.add_sample(name, path, existing, wait=wait)
        else:
            assert job_id is not None and label is not None
            person = library.add_job_voice(check_name(name), job_id, label, existing)
    if as_json:
        _print_json(person)
        return
    sample = _new_sample(person, before)
    if sample is None:  # a job's voice they had already
        click.echo(f"{person['name']} ({person['id']}) has this voice already: {label} of job {job_id}")
        return
    said = f"{person['name']} ({person['id']})"
    if sample["status"] == "pending":
        click.echo(
            f"{said}: {sample['filename']} sent; a worker will read it (`cesar speakers show` says when)"
        )
        return
    what = f"a voice print from {sample['seconds'] or 0:.1f} s of speech ({_origin(sample)})"
    if existing is None:
        click.echo(f"added {said}: {what}")
    else:
        click.echo(f"{said}: {what}; {_prints(len(_ready(person)))} in all")


def run_list(place: Where, *, as_json: bool, verbose: bool) -> None:
    with _library(place, verbose=verbose) as library:
        people = library.people()
    if as_json:
        _print_json({"speakers": people})
        return
    if not people:
        click.echo("the voice library is empty: `cesar speakers add NAME FILE` adds a person", err=True)
    rows = []
    for person in people:
        ready = _ready(person)
        others = [
            f"{count} {status}"
            for status in ("pending", "error")
            if (count := sum(s["status"] == status for s in person["samples"]))
        ]
        rows.append((person["name"], person["id"], str(len(ready)), _speech(ready), ", ".join(others)))
    print_table(("NAME", "ID", "PRINTS", "SPEECH", "NOT READY"), rows)


def run_show(who: str, place: Where, *, as_json: bool, verbose: bool) -> None:
    with _library(place, verbose=verbose) as library:
        person = _pick(library.people(), who)
    if as_json:
        _print_json(person)
        return
    ready = _ready(person)
    click.echo(f"name     {person['name']}")
    click.echo(f"id       {person['id']}")
    click.echo(f"added    {person['created_at'][:19].replace('T', ' ')}")
    click.echo(f"prints   {len(ready)} ready, {_speech(ready)} of speech")
    if person["samples"]:
        click.echo()
        print_table(
            ("PRINT", "STATUS", "SPEECH", "FROM", "ADDED"),
            [
                (
                    sample["id"],
                    sample["status"] if sample["error"] is None else f"error: {sample['error']}",
                    "" if sample["seconds"] is None else f"{sample['seconds']:.1f} s",
                    _origin(sample),
                    sample["created_at"][:19].replace("T", " "),
                )
                for sample in person["samples"]
            ],
        )


def run_rename(who: str, new_name: str, place: Where, *, as_json: bool, verbose: bool) -> None:
    with _library(place, verbose=verbose) as library:
        person = _pick(library.people(), who)
        renamed = library.rename(person["id"], new_name)
    if as_json:
        _print_json(renamed)
    else:
        click.echo(f"renamed {person['name']} to {renamed['name']} ({renamed['id']})")


def run_remove(who: str, place: Where, *, as_json: bool, verbose: bool) -> None:
    with _library(place, verbose=verbose) as library:
        person = _pick(library.people(), who)
        library.remove(person["id"])
    if as_json:
        _print_json({"id": person["id"], "name": person["name"], "deleted": True})
    else:
        click.echo(
            f"removed {person['name']} ({person['id']}) and {_prints(len(person['samples']))} of theirs"
        )

"""The voice library's SQL: people (``speakers``), their voice prints (``voice_prints``) and the voices of
diarized jobs (``job_voices``), run inside the job store's transactions.

A print comes from an audio sample, read by a worker as a job of its own (source ``sample``: the print
is ``pending`` until that job completes it, and shows the job's error if it fails), or from a finished
diarized job's speaker (source ``job``: copied from ``job_voices``, and deleted with that job). Deleting a
person deletes every print of theirs, and the jobs that read their samples.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cesar_common.db import state
from cesar_common.db.clock import db_now
from cesar_common.db.records import JobStatus, SpeakerRecord, VoiceSampleRecord
from cesar_common.db.tables import job_voices, jobs, speakers, voice_prints
from cesar_common.errors import ConflictError, InvalidInputError, NotFoundError

__all__ = [
    "MAX_NAME_LENGTH",
    "add_job_print",
    "add_read_sample",
    "add_sample",
    "check_name",
    "complete_sample",
    "create",
    "delete_person",
    "delete_print",
    "encode_voices",
    "get",
    "id_of_name",
    "library_rows",
    "list_people",
    "owner_of",
    "remember",
    "rename",
    "store_job_voices",
    "unknown_person",
]

MAX_NAME_LENGTH = 100
PENDING, READY, ERROR = "pending", "ready", "error"
# the diarizer's own labels: a person so named could not be told from an unknown voice
_LABEL = re.compile(r"speaker_\d+", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unknown_person(person: str) -> NotFoundError:
    return NotFoundError(f"no person {person} in the voice library")


def owner_of(conn: Connection, person: str) -> str | None:
    """The key that enrolled ``person`` (None: no such person)."""
    found = conn.execute(select(speakers.c.owner).where(speakers.c.id == person)).scalar_one_or_none()
    return None if found is None else str(found)


def check_name(name: str) -> str:
    """A person's name, trimmed; InvalidInputError for an empty, too long or label-like one."""
    text = " ".join(str(name).split())
    if not text:
        raise InvalidInputError("a person's name cannot be empty", extra={"field": "name"})
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"a person's name is at most {MAX_NAME_LENGTH} characters, not {len(text)}",
            extra={"field": "name"},
        )
    if _CONTROL.search(text) or _LABEL.fullmatch(text):
        raise InvalidInputError(
            f"{text!r} cannot name a person: names like SPEAKER_00 are the labels of unknown voices",
            extra={"field": "name"},
        )
    return text


def _key(name: str) -> str:
    return name.casefold()


def id_of_name(conn: Connection, name: str, owner: str) -> str | None:
    """The person ``owner`` enrolled as ``name`` (names are unique per owner)."""
    return conn.execute(
        select(speakers.c.id).where(speakers.c.owner == owner, speakers.c.name_key == _key(name))
    ).scalar_one_or_none()


def create(conn: Connection, name: str, owner: str) -> str:
    """A new person named ``name`` (checked) in ``owner``'s library; ConflictError naming the one who has
    the name already."""
    name = check_name(name)
    existing = id_of_name(conn, name, owner)
    if existing is not None:
        raise _taken(conn, name, existing)
    person = str(uuid.uuid4())
    now = db_now()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(speakers).values(
                    id=person, name=name, name_key=_key(name), owner=owner, created_at=now, updated_at=now
                )
            )
    except IntegrityError:  # made meanwhile by another request
        raise _taken(conn, name, id_of_name(conn, name, owner)) from None
    return person


def _taken(conn: Connection, name: str, person: str | None) -> ConflictError:
    held = conn.execute(select(speakers.c.name).where(speakers.c.id == person)).scalar_one_or_none()
    return ConflictError(
        f"the voice library has a person named {held or name!r} already (names differ by more than case)",
        extra={"speaker_id": person},
    )


def rename(conn: Connection, person: str, name: str) -> None:
    name = check_name(name)
    owner = _lock(conn, person)
    existing = id_of_name(conn, name, owner)
    if existing is not None and existing != person:
        raise _taken(conn, name, existing)
    conn.execute(
        update(speakers)
        .where(speakers.c.id == person)
        .values(name=name, name_key=_key(name), updated_at=db_now())
    )


def _lock(conn: Connection, person: str) -> str:
    """Lock ``person``'s row; their owner."""
    query = select(speakers.c.owner).where(speakers.c.id == person)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = conn.execute(query).first()
    if found is None:
        raise unknown_person(person)
    return str(found.owner)


def _touch(conn: Connection, person: str) -> None:
    conn.execute(update(speakers).where(speakers.c.id == person).values(updated_at=db_now()))


def delete_person(conn: Connection, person: str) -> None:
    """The person, every print of theirs, and the jobs that read their samples (with any audio kept)."""
    _lock(conn, person)
    sample_jobs = conn.execute(
        select(voice_prints.c.sample_job_id).where(
            voice_prints.c.speaker_id == person, voice_prints.c.sample_job_id.is_not(None)
        )
    ).scalars()
    conn.execute(delete(voice_prints).where(voice_prints.c.speaker_id == person))
    state.delete_jobs(conn, [job for job in sample_jobs if job is not None])
    conn.execute(delete(speakers).where(speakers.c.id == person))


def delete_print(conn: Connection, person: str, print_id: str) -> None:
    _lock(conn, person)
    sample_job = conn.execute(
        select(voice_prints.c.sample_job_id).where(
            voice_prints.c.id == print_id, voice_prints.c.speaker_id == person
        )
    ).first()
    if sample_job is None:
        raise NotFoundError(f"the person {person} has no voice sample {print_id}")
    conn.execute(delete(voice_prints).where(voice_prints.c.id == print_id))
    if sample_job[0] is not None:
        state.delete_jobs(conn, [sample_job[0]])
    _touch(conn, person)


def add_sample(conn: Connection, person: str, job_id: str, filename: str | None) -> None:
    """A print to come from the audio sample job ``job_id`` reads (written in the transaction that
    queues that job, so its worker always finds it)."""
    _lock(conn, person)
    _insert_print(conn, person, status=PENDING, source="sample", sample_job_id=job_id, filename=filename)


def add_read_sample(
    conn: Connection, person: str, embedding: bytes, seconds: float, filename: str | None
) -> None:
    """A print read from an audio sample on this machine (``cesar speakers add`` on a local database)."""
    _lock(conn, person)
    _insert_print(
        conn, person, status=READY, source="sample", embedding=embedding, seconds=seconds, filename=filename
    )


def _insert_print(conn: Connection, person: str, **values: Any) -> None:
    """One more voice print of ``person`` (locked by the caller), who is then updated."""
    conn.execute(
        insert(voice_prints).values(id=str(uuid.uuid4()), speaker_id=person, created_at=db_now(), **values)
    )
    _touch(conn, person)


def complete_sample(conn: Connection, job_id: str, embedding: bytes, seconds: float) -> int:
    """The print the sample job ``job_id`` read; how many prints waited for it (0: its person is gone)."""
    return int(
        conn.execute(
            update(voice_prints)
            .where(voice_prints.c.sample_job_id == job_id, voice_prints.c.status == PENDING)
            .values(status=READY, embedding=embedding, seconds=seconds)
        ).rowcount
    )


def add_job_print(conn: Connection, person: str, job_id: str, label: str) -> None:
    """The voice of ``label`` in the finished diarized job ``job_id``, as a print of ``person``: only a job
    of the person's owner (another owner's job is as unknown as none)."""
    owner = _lock(conn, person)
    voice = conn.execute(
        select(job_voices.c.embedding, jobs.c.speakers)
        .join(jobs, jobs.c.id == job_voices.c.job_id)
        .where(job_voices.c.job_id == job_id, job_voices.c.label == label, jobs.c.owner == owner)
    ).first()
    if voice is None:
        raise NotFoundError(
            f"job {job_id} has no voice {label!r}: give the label of one of its speakers (a completed "
            "job transcribed with diarize)",
            extra={"job_id": job_id, "label": label},
        )
    already = conn.execute(
        select(voice_prints.c.id).where(
            voice_prints.c.speaker_id == person,
            voice_prints.c.job_id == job_id,
            voice_prints.c.label == label,
        )
    ).first()
    if already is not None:
        return  # remembered once is enough
    _insert_print(
        conn,
        person,
        status=READY,
        source="job",
        embedding=voice.embedding,
        seconds=_seconds(voice.speakers, label),
        job_id=job_id,
        label=label,
    )


def _seconds(listed: Sequence[Mapping[str, Any]] | None, label: str) -> float | None:
    for entry in listed or ():
        if entry.get("label", entry.get("speaker")) == label:
            return float(entry["duration"])
    return None


def remember(conn: Connection, job_id: str, label: str, name: str) -> str:
    """Add the job's voice of ``label`` to the person named ``name`` (made if new) of the job's owner's
    library; their id."""
    owner = conn.execute(select(jobs.c.owner).where(jobs.c.id == job_id)).scalar_one()
    person = id_of_name(conn, check_name(name), owner) or create(conn, name, owner)
    add_job_print(conn, person, job_id, label)
    return person


def encode_voices(voices: Mapping[str, Sequence[float]] | None) -> dict[str, bytes]:
    """Voice prints as stored: 256 little-endian float32 numbers each (what
    :func:`cesar_common.diarization.library.from_bytes` reads)."""
    return {label: struct.pack(f"<{len(vector)}f", *vector) for label, vector in (voices or {}).items()}


def store_job_voices(conn: Connection, job_id: str, voices: Mapping[str, bytes]) -> None:
    """A diarized job's speakers' prints, by label (what :func:`add_job_print` takes)."""
    conn.execute(delete(job_voices).where(job_voices.c.job_id == job_id))
    if voices:
        conn.execute(
            insert(job_voices),
            [{"job_id": job_id, "label": label, "embedding": data} for label, data in voices.items()],
        )


def library_rows(
    conn: Connection, owner: str, names: Iterable[str] | None = None
) -> list[tuple[str, str, bytes]]:
    """Every ready print of ``owner``'s library as ``(person id, name, print)``, of the people ``names``
    only when given."""
    query = (
        select(speakers.c.id, speakers.c.name, voice_prints.c.embedding)
        .join(voice_prints, voice_prints.c.speaker_id == speakers.c.id)
        .where(voice_prints.c.status == READY, speakers.c.owner == owner)
    )
    if names is not None:
        query = query.where(speakers.c.name_key.in_([_key(name) for name in names]))
    return [(row.id, row.name, row.embedding) for row in conn.execute(query)]


def get(conn: Connection, person: str) -> SpeakerRecord:
    found = _people(conn, [person])
    if not found:
        raise unknown_person(person)
    return found[0]


def list_people(conn: Connection, owner: str | None) -> list[SpeakerRecord]:
    """The people of ``owner``'s library (None: everyone's)."""
    return _people(conn, None, owner)


def _people(conn: Connection, ids: Sequence[str] | None, owner: str | None = None) -> list[SpeakerRecord]:
    query = select(speakers).order_by(func.lower(speakers.c.name), speakers.c.id)
    if ids is not None:
        query = query.where(speakers.c.id.in_(ids))
    if owner is not None:
        query = query.where(speakers.c.owner == owner)
    people = conn.execute(query).all()
    prints = (
        select(
            voice_prints.c.id,
            voice_prints.c.speaker_id,
            voice_prints.c.status,
            voice_prints.c.source,
            voice_prints.c.seconds,
            voice_prints.c.job_id,
            voice_prints.c.label,
            voice_prints.c.sample_job_id,
            voice_prints.c.filename,
            voice_prints.c.created_at,
            jobs.c.status.label("job_status"),
            jobs.c.error_message.label("job_error"),
        )
        .outerjoin(jobs, jobs.c.id == voice_prints.c.sample_job_id)
        .order_by(voice_prints.c.created_at, voice_prints.c.id)
    )
    if ids is not None:
        prints = prints.where(voice_prints.c.speaker_id.in_(ids))
    samples: dict[str, list[VoiceSampleRecord]] = {}
    for row in conn.execute(prints):
        samples.setdefault(row.speaker_id, []).append(_sample(row))
    return [
        SpeakerRecord(
            id=person.id,
            name=person.name,
            created_at=person.created_at,
            updated_at=person.updated_at,
            samples=tuple(samples.get(person.id, ())),
        )
        for person in people
    ]


def _sample(row: Any) -> VoiceSampleRecord:
    status, error = row.status, None
    if status == PENDING and row.job_status in (JobStatus.ERROR.value, JobStatus.CANCELLED.value):
        status, error = ERROR, row.job_error or f"the job reading the sample was {row.job_status}"
    elif status == PENDING and row.job_status is None:
        status, error = ERROR, "the job reading the sample is gone"
    return VoiceSampleRecord(
        id=row.id,
        source=row.source,
        status=status,
        seconds=row.seconds,
        job_id=row.job_id or row.sample_job_id,
        label=row.label,
        filename=row.filename,
        error=error,
        created_at=row.created_at,
    )

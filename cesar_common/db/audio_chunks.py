"""A job's audio: ``job_audio`` rows, written and read as a stream.

In the database (the default), rows of about 1 MiB: an upload is stored one chunk per short transaction
(the write lock is never held while a client's bytes trickle in) and read back a few chunks per read
transaction, so neither side ever holds a whole file in memory. With an object store
(:mod:`cesar_common.blob_store`), a row names the object that holds its bytes instead (``object_key``,
``size``, ``sha256``; ``data`` empty): an upload is one such row, a live session a row per piece.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, cast

from sqlalchemy import Connection, Row, delete, func, insert, select

from cesar_common.blob_store import StoredObject
from cesar_common.db.tables import job_audio, job_part_audio, jobs, live_sessions
from cesar_common.errors import PayloadTooLargeError

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_SIZE",
    "READ_BATCH",
    "AudioSource",
    "check_size",
    "delete_audio",
    "has_chunks",
    "hash_stream",
    "insert_chunk",
    "insert_object",
    "layout",
    "movable",
    "named_objects",
    "read_chunks",
    "rechunk",
    "replace",
    "stored_bytes",
    "stored_extent",
    "stored_object",
]

#: bytes per job_audio row
CHUNK_SIZE = 1024 * 1024
#: job_audio rows fetched per read transaction while streaming audio out
READ_BATCH = 4

AudioSource = Iterable[bytes] | BinaryIO | bytes

#: a row's bytes, wherever they are
CHUNK_BYTES = func.coalesce(job_audio.c.size, func.length(job_audio.c.data))


def insert_chunk(conn: Connection, job_id: str, seq: int, data: bytes) -> None:
    conn.execute(insert(job_audio).values(job_id=job_id, seq=seq, data=data))


def insert_object(conn: Connection, job_id: str, seq: int, stored: StoredObject) -> None:
    """A chunk whose bytes are the object ``stored`` (written before this row, never after)."""
    conn.execute(
        insert(job_audio).values(
            job_id=job_id, seq=seq, data=b"", object_key=stored.key, size=stored.size, sha256=stored.sha256
        )
    )


def stored_object(row: Row[Any, Any]) -> StoredObject | None:
    """The object a chunk row (:func:`read_chunks`') names, or None for bytes in the row."""
    if row.object_key is None:
        return None
    return StoredObject(row.object_key, int(row.size), row.sha256)


def named_objects(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` a job's or a part's audio row names."""
    named: set[str] = set()
    for table in (job_audio, job_part_audio):
        named.update(conn.execute(select(table.c.object_key).where(table.c.object_key.in_(keys))).scalars())
    return named


def delete_audio(conn: Connection, job_ids: Sequence[str]) -> None:
    conn.execute(delete(job_audio).where(job_audio.c.job_id.in_(job_ids)))


def has_chunks(conn: Connection, job_id: str) -> bool:
    first = conn.execute(select(job_audio.c.seq).where(job_audio.c.job_id == job_id).limit(1)).first()
    return first is not None


def read_chunks(
    conn: Connection, job_id: str, *, from_seq: int, limit: int = READ_BATCH
) -> Sequence[Row[Any, Any, Any, Any, Any]]:
    """Up to ``limit`` chunks (``seq``, ``data``, and the object naming columns) from ``from_seq`` on, in
    order."""
    return conn.execute(
        select(
            job_audio.c.seq, job_audio.c.data, job_audio.c.object_key, job_audio.c.size, job_audio.c.sha256
        )
        .where(job_audio.c.job_id == job_id, job_audio.c.seq >= from_seq)
        .order_by(job_audio.c.seq)
        .limit(limit)
    ).all()


def stored_bytes(conn: Connection, job_id: str) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(CHUNK_BYTES), 0)).where(job_audio.c.job_id == job_id)
    ).scalar_one()
    return int(total)


def stored_extent(conn: Connection, job_id: str) -> tuple[int, int]:
    """``(chunks, bytes)`` of the job's audio, read together: a live session's audio grows meanwhile."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(CHUNK_BYTES), 0)).where(job_audio.c.job_id == job_id)
    ).one()
    return int(row[0]), int(row[1])


# --- moving audio between the database and an object store (`cesar db move`) -------------------------
Layout = list[tuple[int, int, str | None]]


def layout(conn: Connection, job_id: str) -> Layout:
    """``(seq, bytes, object key)`` of each of the job's chunks, in order: what a move must find unchanged
    when it swaps them."""
    rows = conn.execute(
        select(job_audio.c.seq, CHUNK_BYTES, job_audio.c.object_key)
        .where(job_audio.c.job_id == job_id)
        .order_by(job_audio.c.seq)
    ).all()
    return [(int(seq), int(size), key) for seq, size, key in rows]


def movable(conn: Connection, *, to_objects: bool, after: str, limit: int) -> list[str]:
    """Up to ``limit`` jobs (by id, after ``after``) with audio to move: bytes in rows (``to_objects``) or
    rows naming objects. Jobs whose audio may still change wait: uploads still arriving, live sessions
    still taking audio."""
    still_open = (jobs.c.status == "pending") | (
        select(live_sessions.c.job_id)
        .where(live_sessions.c.job_id == jobs.c.id, live_sessions.c.ended.is_(None))
        .exists()
    )
    in_objects = job_audio.c.object_key.is_not(None)
    has = (
        select(job_audio.c.job_id)
        .where(job_audio.c.job_id == jobs.c.id, ~in_objects if to_objects else in_objects)
        .exists()
    )
    return list(
        conn.execute(
            select(jobs.c.id).where(jobs.c.id > after, has, ~still_open).order_by(jobs.c.id).limit(limit)
        ).scalars()
    )


def replace(conn: Connection, job_id: str, before: Layout, pieces: Iterable[bytes | StoredObject]) -> bool:
    """Swap the job's chunks for ``pieces`` (rows of bytes, or naming objects), if they are still
    ``before``; False (nothing changed) when they are not (the job ended, was deleted, or moved)."""
    if layout(conn, job_id) != before:
        return False
    delete_audio(conn, [job_id])
    for seq, piece in enumerate(pieces):
        if isinstance(piece, StoredObject):
            insert_object(conn, job_id, seq, piece)
        else:
            insert_chunk(conn, job_id, seq, piece)
    return True


# --- byte streams ------------------------------------------------------------------------------------
def rechunk(audio: AudioSource, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Cut a byte stream (file object, iterable of bytes, or bytes) into ``size``-byte pieces."""
    pieces: Iterable[bytes]
    if isinstance(audio, bytes | bytearray | memoryview):
        pieces = [bytes(audio)]
    elif hasattr(audio, "read"):
        reader = cast(BinaryIO, audio)
        pieces = iter(lambda: reader.read(size), b"")
    else:
        pieces = audio
    buffer = bytearray()
    for piece in pieces:
        view = memoryview(piece)
        offset = 0
        if buffer:
            offset = min(size - len(buffer), len(view))
            buffer += view[:offset]
            if len(buffer) == size:
                yield bytes(buffer)
                buffer.clear()
        while len(view) - offset >= size:
            yield bytes(view[offset : offset + size])
            offset += size
        buffer += view[offset:]
    if buffer:
        yield bytes(buffer)


def hash_stream(audio: AudioSource, max_bytes: int | None) -> str:
    """The sha256 of ``audio`` (refused past ``max_bytes``), without storing it."""
    digest = hashlib.sha256()
    total = 0
    for chunk in rechunk(audio):
        total += len(chunk)
        check_size(total, max_bytes)
        digest.update(chunk)
    return digest.hexdigest()


def check_size(total: int, max_bytes: int | None) -> None:
    if max_bytes is not None and total > max_bytes:
        raise PayloadTooLargeError(
            f"the audio is larger than the limit of {_describe_size(max_bytes)}",
            extra={"max_bytes": max_bytes},
        )


def _describe_size(size: int) -> str:
    mib = 1024 * 1024
    return f"{size // mib} MiB" if size % mib == 0 else f"{size} bytes"

"""A job's audio in the database: ``job_audio`` rows of about 1 MiB, written and read as a stream.

An upload is stored one chunk per short transaction (the write lock is never held while a client's bytes
trickle in) and read back a few chunks per read transaction, so neither side ever holds a whole file in
memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, cast

from sqlalchemy import Connection, Row, delete, func, insert, select

from cesar_common.db.tables import job_audio
from cesar_common.errors import PayloadTooLargeError

__all__ = [
    "CHUNK_SIZE",
    "READ_BATCH",
    "AudioSource",
    "check_size",
    "delete_audio",
    "has_chunks",
    "hash_stream",
    "insert_chunk",
    "read_chunks",
    "rechunk",
    "stored_bytes",
    "stored_extent",
]

#: bytes per job_audio row
CHUNK_SIZE = 1024 * 1024
#: job_audio rows fetched per read transaction while streaming audio out
READ_BATCH = 4

AudioSource = Iterable[bytes] | BinaryIO | bytes


def insert_chunk(conn: Connection, job_id: str, seq: int, data: bytes) -> None:
    conn.execute(insert(job_audio).values(job_id=job_id, seq=seq, data=data))


def delete_audio(conn: Connection, job_ids: Sequence[str]) -> None:
    conn.execute(delete(job_audio).where(job_audio.c.job_id.in_(job_ids)))


def has_chunks(conn: Connection, job_id: str) -> bool:
    first = conn.execute(select(job_audio.c.seq).where(job_audio.c.job_id == job_id).limit(1)).first()
    return first is not None


def read_chunks(
    conn: Connection, job_id: str, *, from_seq: int, limit: int = READ_BATCH
) -> Sequence[Row[Any, Any]]:
    """Up to ``limit`` chunks (``seq``, ``data``) from ``from_seq`` on, in order."""
    return conn.execute(
        select(job_audio.c.seq, job_audio.c.data)
        .where(job_audio.c.job_id == job_id, job_audio.c.seq >= from_seq)
        .order_by(job_audio.c.seq)
        .limit(limit)
    ).all()


def stored_bytes(conn: Connection, job_id: str) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(func.length(job_audio.c.data)), 0)).where(job_audio.c.job_id == job_id)
    ).scalar_one()
    return int(total)


def stored_extent(conn: Connection, job_id: str) -> tuple[int, int]:
    """``(chunks, bytes)`` of the job's audio, read together: a live session's audio grows meanwhile."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(func.length(job_audio.c.data)), 0)).where(
            job_audio.c.job_id == job_id
        )
    ).one()
    return int(row[0]), int(row[1])


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

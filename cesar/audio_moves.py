"""What `cesar db move` does: move the audio already stored from the database into the object store
(``CESAR_BLOB_URL``), or back, one job at a time, while Cesar serves.

Each job's audio is copied, then its rows are swapped in one transaction that first checks they are still
what was copied (a job that ended or was deleted meanwhile is left alone). A run stopped half-way leaves
every job's audio whole in one place or the other; running it again moves what is left.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from cesar_common.blob_store import open_blob_store
from cesar_common.choices import AUDIO_PLACES
from cesar_common.db.connect import safe_url
from cesar_common.db.migrate import ensure_schema_current
from cesar_common.db.store import JobStore
from cesar_common.errors import InvalidInputError
from cesar_common.settings import get_settings

__all__ = ["MoveReport", "move_audio"]


@dataclass(slots=True)
class MoveReport:
    destination: str
    moved: int = 0
    bytes: int = 0
    changed: int = 0  # jobs whose audio changed or went while it was copied

    def line(self) -> str:
        mib = self.bytes / 2**20
        said = f"moved the audio of {self.moved} jobs ({mib:.1f} MiB) into {self.destination}"
        if self.changed:
            said += f"; {self.changed} changed meanwhile (ended or deleted; run it again for any left)"
        return said


def move_audio(
    database_url: str | None,
    *,
    to: str,
    batch: int = 100,
    on_job: Callable[[MoveReport], None] | None = None,
) -> MoveReport:
    """Move every settled job's audio ``to`` ``"objects"`` or ``"database"``; ``on_job`` after each job."""
    if to not in AUDIO_PLACES:
        raise InvalidInputError(f"audio moves to {' or '.join(AUDIO_PLACES)}, not {to!r}")
    settings = get_settings(database_url=database_url)
    blobs = open_blob_store(settings)
    if blobs is None:
        raise InvalidInputError(
            "CESAR_BLOB_URL is not set: the object store to move audio "
            + ("into" if to == "objects" else "out of")
            + " must be named (s3://bucket/prefix)"
        )
    store = JobStore.from_url(settings.database_url, blobs=blobs, pooled=False)
    to_objects = to == "objects"
    report = MoveReport(blobs.url if to_objects else safe_url(settings.database_url))
    try:
        ensure_schema_current(store.engine)
        blobs.check(write=True)
        after = ""
        with tempfile.TemporaryFile(prefix="cesar-move-") as scratch:
            while ids := store.audio_to_move(to_objects=to_objects, after=after, limit=batch):
                for job_id in ids:
                    moved = store.move_audio(job_id, to_objects=to_objects, scratch=scratch)
                    if moved is None:
                        report.changed += 1
                    else:
                        report.moved += 1
                        report.bytes += moved
                    if on_job is not None:
                        on_job(report)
                after = ids[-1]
    finally:
        store.close()
        blobs.close()
    return report

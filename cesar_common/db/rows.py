"""Rows into frozen records, and the opaque cursors of job listings."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from sqlalchemy import Row

from cesar_common.db.records import (
    Decoding,
    JobRecord,
    JobSource,
    JobStatus,
    PublicStatus,
    WebhookDeliveryRecord,
    WorkerRecord,
)
from cesar_common.db.tables import jobs
from cesar_common.errors import InvalidInputError
from cesar_common.job_options import options_from_columns
from cesar_common.text import is_plain_token

__all__ = [
    "JOB_FIELDS",
    "Cursor",
    "decode_cursor",
    "decoding_values",
    "encode_cursor",
    "job_record",
    "worker_record",
]

#: the jobs table's column names in table order: what ``select(jobs)`` and ``returning(*jobs.c)`` yield
JOB_FIELDS = tuple(column.name for column in jobs.c)
_STATUSES = {str(status): status for status in JobStatus}
_SOURCES = {str(source): source for source in JobSource}


def job_record(row: Sequence[Any], webhook: WebhookDeliveryRecord | None = None) -> JobRecord:
    """A full jobs row (every column, in table order) as a record.

    Reads the columns by position: by name costs about a microsecond a column, and this is the API's
    hottest path (``GET /jobs/{id}``).
    """
    job = dict(zip(JOB_FIELDS, tuple(row), strict=True))
    return JobRecord(
        id=job["id"],
        status=_STATUSES[job["status"]],
        source=_SOURCES[job["source"]],
        source_url=job["source_url"],
        filename=job["filename"],
        content_type=job["content_type"],
        size_bytes=job["size_bytes"],
        options=options_from_columns(job),
        created_at=job["created_at"],
        started_at=job["started_at"],
        completed_at=job["completed_at"],
        progress=float(job["progress"]),
        attempts=job["attempts"],
        max_attempts=job["max_attempts"],
        worker_id=job["worker_id"],
        lease_expires_at=job["lease_expires_at"],
        cancel_requested=bool(job["cancel_requested"]),
        result_text=job["result_text"],
        detected_language=job["detected_language"],
        language_probability=job["language_probability"],
        duration=job["duration"],
        segments=job["segments"],
        error_message=job["error_message"],
        error_code=job["error_code"],
        callback_url=job["callback_url"],
        webhook=webhook,
        request_fingerprint=job["request_fingerprint"],
        decoding=_decoding(job),
        segment_count=job["segment_count"],
        speakers=job["speakers"],
        revision=job["revision"],
        owner=job["owner"],
    )


def _decoding(job: dict[str, Any]) -> Decoding | None:
    if job["decode_mode"] is None:
        return None
    return Decoding(
        device=job["decode_device"] or "",
        compute_type=job["decode_compute_type"] or "",
        mode=job["decode_mode"],
        batch_size=job["decode_batch_size"] or 1,
        parts=job["parts"] or 1,
        workers=job["decode_workers"] or 1,
    )


def decoding_values(decoding: Decoding | None) -> dict[str, Any]:
    """The job columns that record how it was decoded."""
    if decoding is None:
        return {}
    return {
        "decode_device": decoding.device,
        "decode_compute_type": decoding.compute_type,
        "decode_mode": decoding.mode,
        "decode_batch_size": decoding.batch_size,
        "decode_workers": decoding.workers,
    }


def worker_record(row: Row[Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        current_job_id=row.current_job_id,
        models=list(row.models or []),
        memory=row.memory if isinstance(row.memory, dict) else None,
    )


# --- cursors -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of ``GET /jobs`` ends: the last job's (created_at, id), and the status filter the
    listing had, so that following the cursor alone keeps the filter."""

    created_at: datetime
    job_id: str
    status: str | None = None


def encode_cursor(cursor: Cursor) -> str:
    raw = f"{cursor.created_at.astimezone(UTC).isoformat()}|{cursor.job_id}|{cursor.status or ''}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    """The place a cursor points after; InvalidInputError for anything we did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, job_id, status = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidInputError("invalid cursor") from exc
    if created_at.tzinfo is None or not is_plain_token(job_id, max_length=36):
        raise InvalidInputError("invalid cursor")
    if status and status not in get_args(PublicStatus):
        raise InvalidInputError("invalid cursor")
    return Cursor(created_at.astimezone(UTC), job_id, status or None)

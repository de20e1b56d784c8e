"""Long jobs cut into parts (``CESAR_SPLIT_SECONDS``): the ``job_parts`` and ``job_part_audio`` tables, and
the job columns ``parts`` and ``decode_workers``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Jobs from before were transcribed whole (``parts`` null). A downgrade puts jobs running as parts back in
the queue, to be transcribed whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # models.UTCDateTime stores through this type (naive UTC on SQLite, timestamptz on PostgreSQL)
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parts", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("decode_workers", sa.Integer(), nullable=True))
    op.create_table(
        "job_parts",
        sa.Column("id", sa.String(48), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", _utc(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_parts_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_job_parts"),
    )
    op.create_index("ix_job_parts_job_id", "job_parts", ["job_id"])
    op.create_index("ix_job_parts_status_created_at_id", "job_parts", ["status", "created_at", "id"])
    op.create_index("ix_job_parts_status_lease_expires_at", "job_parts", ["status", "lease_expires_at"])
    op.create_table(
        "job_part_audio",
        sa.Column("part_id", sa.String(48), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("part_id", "seq", name="pk_job_part_audio"),
    )
    op.create_index("ix_job_part_audio_job_id", "job_part_audio", ["job_id"])


def downgrade() -> None:
    # jobs running as parts go back to the queue, to be transcribed whole
    op.execute(
        "DELETE FROM job_segments WHERE job_id IN "
        "(SELECT id FROM jobs WHERE status = 'processing' AND parts IS NOT NULL)"
    )
    op.execute(
        "UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL, started_at = NULL, "
        "progress = 0, segment_count = 0 WHERE status = 'processing' AND parts IS NOT NULL"
    )
    op.drop_index("ix_job_part_audio_job_id", table_name="job_part_audio")
    op.drop_table("job_part_audio")
    op.drop_index("ix_job_parts_status_lease_expires_at", table_name="job_parts")
    op.drop_index("ix_job_parts_status_created_at_id", table_name="job_parts")
    op.drop_index("ix_job_parts_job_id", table_name="job_parts")
    op.drop_table("job_parts")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("decode_workers")
        batch.drop_column("parts")

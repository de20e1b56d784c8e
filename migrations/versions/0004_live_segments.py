"""Live jobs: the segments a worker has decoded so far, and their count.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

``job_segments`` holds a running job's segments as they are decoded (one row each, in order), so clients
can follow it live; the final transcript stays in ``jobs.segments``. ``jobs.segment_count`` counts them
either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("segment_count", sa.Integer(), nullable=False, server_default="0"))
    # jobs completed before: their count is their transcript's (both backends have json_array_length)
    op.execute("UPDATE jobs SET segment_count = json_array_length(segments) WHERE segments IS NOT NULL")
    op.create_table(
        "job_segments",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_segments_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name="pk_job_segments"),
    )


def downgrade() -> None:
    op.drop_table("job_segments")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("segment_count")

"""Live sessions: jobs whose audio arrives while they run (``source`` ``live``), and their audio stream.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

``live_sessions`` holds one row per live job: the format of its audio, how much has arrived (the chunks are
``job_audio`` rows, as an upload's), when the last piece came, why it ended, and the words its worker has
heard but not confirmed. A downgrade ends running and queued live sessions as errors (the schema before
cannot run them) and makes every live job an ``upload`` (the version before reads no other source).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("audio_format", sa.String(16), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column("audio_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("audio_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended", sa.String(16), nullable=True),
        sa.Column("tentative", sa.Text(), nullable=False),
        sa.Column("tentative_start", sa.Float(), nullable=True),
        sa.Column("behind_seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_live_sessions_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_live_sessions"),
    )


def downgrade() -> None:
    op.execute(
        "UPDATE jobs SET status = 'error', error_code = 'downgraded', lease_expires_at = NULL, "
        "error_message = 'live sessions are not supported by this version', completed_at = CURRENT_TIMESTAMP "
        "WHERE source = 'live' AND status IN ('queued', 'processing')"
    )
    op.execute("UPDATE jobs SET source = 'upload' WHERE source = 'live'")  # the version before: no 'live'
    op.drop_table("live_sessions")

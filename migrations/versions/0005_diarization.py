"""Speaker diarization: the job options ``diarize``, ``num_speakers``, ``min_speakers``, ``max_speakers``,
and a completed job's ``speakers`` (each with their speaking time).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Jobs created before were not diarized (``diarize`` false, no speaker counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("diarize", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("num_speakers", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("min_speakers", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_speakers", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("speakers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("speakers")
        batch.drop_column("max_speakers")
        batch.drop_column("min_speakers")
        batch.drop_column("num_speakers")
        batch.drop_column("diarize")

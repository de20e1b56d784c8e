"""How a completed job was decoded: device, compute type, sequential or batched, batch size.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Nullable columns only: jobs completed before this revision (and jobs not completed) leave them empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("decode_device", "decode_compute_type", "decode_mode", "decode_batch_size")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("decode_device", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("decode_compute_type", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("decode_mode", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("decode_batch_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)

"""Worker memory: what each worker's loaded models take.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

A nullable JSON column on ``workers``, ``memory``: the worker's memory budget for its models, its resident
memory, how many models it loaded and unloaded, and each model it holds with its estimated and measured size,
refreshed with its presence. Null for a worker that does not report it. A downgrade drops it (workers go on
reporting only their models' names).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("memory", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("memory")

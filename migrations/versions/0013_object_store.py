"""Audio in an S3-compatible object store (``CESAR_BLOB_URL``): a chunk of a job's or a part's audio may name
an object instead of holding its bytes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

- ``job_audio`` and ``job_part_audio`` gain ``object_key``, ``size`` and ``sha256``: a row with an object key
  holds no bytes (``data`` is empty) and names the object that does, with what reading it must find. An
  upload or a part is one such row; a live session's audio is a row per piece, as in the database.
  Indexed by key: the workers' sweep asks which of the objects it lists a row still names.
- ``chores``: housekeeping one worker of the fleet does per interval (the sweep lists the whole bucket): the
  worker that moves a chore's ``due_at`` on does it.

Columns added, never altered: on SQLite an existing ``job_audio`` is not copied. A downgrade refuses while
any row names an object (`cesar db move --to database` brings the audio back first).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("job_audio", "job_part_audio")


def upgrade() -> None:
    op.create_table(
        "chores",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chores")),
    )
    for table in TABLES:
        op.add_column(table, sa.Column("object_key", sa.String(1024), nullable=True))
        op.add_column(table, sa.Column("size", sa.BigInteger(), nullable=True))
        op.add_column(table, sa.Column("sha256", sa.String(64), nullable=True))
        op.create_index(f"ix_{table}_object_key", table, ["object_key"])


def downgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        query = sa.text(f"SELECT count(*) FROM {table} WHERE object_key IS NOT NULL")
        named = bind.execute(query).scalar_one()
        if named:
            raise RuntimeError(
                f"{named} rows of {table} name objects in the object store: run "
                "`cesar db move --to database` before downgrading"
            )
    op.drop_table("chores")
    for table in TABLES:
        op.drop_index(f"ix_{table}_object_key", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("sha256")
            batch.drop_column("size")
            batch.drop_column("object_key")

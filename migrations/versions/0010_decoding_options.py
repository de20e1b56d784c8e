"""Decoding options: how Whisper decodes a job (hotwords, temperature, thresholds, VAD's options, spans).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

One nullable JSON column on ``jobs``, ``decoding_options``: the options of
``cesar_common.job_options.DecodingOptions`` that differ from their defaults, by name (``{"hotwords":
"Cesar", "temperature": [0.0, 0.2]}``), null when every one is at its default. One column rather than a
column each, because: there are a dozen of them and a job sets none or one or two (a dozen columns, nearly
always at their defaults, on every row of the hottest table); three of them are lists (``temperature``,
``suppress_tokens``, ``clip_timestamps``), which would be JSON anyway; nothing queries jobs by them (they
are read with the job, as its other options are); and faster-whisper's next option then needs no migration.
Jobs from before were decoded with every default, which is what null means. A downgrade drops the column:
jobs keep their other options and would be decoded again with the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("decoding_options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("decoding_options")

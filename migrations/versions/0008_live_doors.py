"""Live doors: turns (OpenAI's Realtime API) and followed stream URLs on a live session.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Four nullable JSON columns on ``live_sessions``. ``turn_detection``: how a realtime connection's audio is
cut into turns (``server_vad`` with its options, or ``none``: the client commits), null for a session of
``GET /live``; ``marks``: the client's commits and clears, each after a numbered audio chunk, in order;
``turns``: the worker's last turns (when speech started and stopped, and whether the turn is complete);
``gaps``: where a followed stream URL dropped and for how long. And a nullable float, ``max_seconds``: a
session's own maximum length (a stream URL's ``max_seconds``), below ``CESAR_LIVE_MAX_SECONDS``. A downgrade
drops them (a session running then goes on without turns, and up to the server's maximum length, as the
version before runs it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("turn_detection", "marks", "turns", "gaps")


def upgrade() -> None:
    with op.batch_alter_table("live_sessions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=True))
        batch.add_column(sa.Column("max_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("live_sessions") as batch:
        batch.drop_column("max_seconds")
        for name in reversed(COLUMNS):
            batch.drop_column(name)

"""Many users on one server: API keys, the owner of each job and voice, what a job counts against quotas.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

- ``api_keys``: one row per key, never deleted (revoking keeps it, so a job's owner still has a name). The
  key itself is never stored: ``prefix`` (public, what ``cesar keys list`` shows and what finds the row) and
  ``key_hash`` (a keyed BLAKE2b of the whole key). ``admin`` keys see every job; ``priority`` orders owners
  in the queue; ``max_queued``, ``audio_hours_per_day`` and ``requests_per_second`` are the key's limits
  (null: none); ``expires_at`` and ``revoked_at`` end it.
- ``jobs.owner``: the key that made the job (``""``: made with ``CESAR_API_KEY`` or on a server without
  keys, as every job before this migration); ``jobs.audio_seconds``: the audio's length as probed at
  submit, what the daily audio quota counts. Indexed with status and age for listing one owner's jobs,
  counting their queue and the fair claim. An ``Idempotency-Key`` is unique per owner (each key's own).
- ``owner_turns``: when each owner's work was last claimed, so that owners level on priority and running
  work take turns (the one served longest ago first).
- ``speakers.owner``: the key that enrolled the person (``""`` as for jobs); names are unique per owner.

A downgrade drops the keys and every job's owner: the server is back to one key (or none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("name_key", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_queued", sa.Integer(), nullable=True),
        sa.Column("audio_hours_per_day", sa.Float(), nullable=True),
        sa.Column("requests_per_second", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("ux_api_keys_name_key", "api_keys", ["name_key"], unique=True)
    op.create_index("ux_api_keys_prefix", "api_keys", ["prefix"], unique=True)
    op.create_table(
        "owner_turns",
        sa.Column("owner", sa.String(36), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_owner_turns")),
    )
    # the server's own key's turn (a key's row is made with the key)
    op.execute("INSERT INTO owner_turns (owner) VALUES ('')")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(36), nullable=False, server_default=""))
        batch.add_column(sa.Column("audio_seconds", sa.Float(), nullable=True))
    op.create_index("ix_jobs_owner_status_created_at_id", "jobs", ["owner", "status", "created_at", "id"])
    op.drop_index("ux_jobs_idempotency_key", table_name="jobs")
    op.create_index("ux_jobs_owner_idempotency_key", "jobs", ["owner", "idempotency_key"], unique=True)
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("owner", sa.String(36), nullable=False, server_default=""))
    op.drop_index("ux_speakers_name_key", table_name="speakers")
    op.create_index("ux_speakers_owner_name_key", "speakers", ["owner", "name_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_speakers_owner_name_key", table_name="speakers")
    # people of different owners may share a name: the old index would refuse them
    op.execute("DELETE FROM speakers WHERE id NOT IN (SELECT min(id) FROM speakers GROUP BY name_key)")
    op.create_index("ux_speakers_name_key", "speakers", ["name_key"], unique=True)
    with op.batch_alter_table("speakers") as batch:
        batch.drop_column("owner")
    op.drop_index("ix_jobs_owner_status_created_at_id", table_name="jobs")
    op.drop_index("ux_jobs_owner_idempotency_key", table_name="jobs")
    # two owners' jobs may hold the same key: the older index would refuse them
    op.execute(
        "UPDATE jobs SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND id NOT IN "
        "(SELECT min(id) FROM jobs WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key)"
    )
    op.create_index("ux_jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("audio_seconds")
        batch.drop_column("owner")
    op.drop_table("owner_turns")
    op.drop_index("ux_api_keys_prefix", table_name="api_keys")
    op.drop_index("ux_api_keys_name_key", table_name="api_keys")
    op.drop_table("api_keys")

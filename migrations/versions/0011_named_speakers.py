"""Named speakers and reviewed transcripts: the voice library, diarized jobs' voices, transcript revisions.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

- ``speakers``: the people of the voice library (a name, unique regardless of case).
- ``voice_prints``: a person's voice prints (256 float32 numbers, little-endian, unit length), each with
  where it came from: an audio sample (``source`` ``sample``; read by a worker, its job ``sample_job_id``,
  no foreign key: the print outlives the job that read it) or a diarized job's speaker (``source`` ``job``,
  ``job_id`` and ``label``; deleted with that job). ``status`` is ``pending`` until a worker has read a
  sample, then ``ready`` or ``error``. Deleted with their person.
- ``job_voices``: a diarized job's speakers' voice prints, by the label the diarizer gave (``SPEAKER_00``);
  what "remember this voice" and ``POST /speakers`` with a job take. Deleted with the job.
- ``transcript_revisions``: the transcripts a job had: revision 0 is the machine's (written with the first
  edit), then one row per edit with who made it, when and what changed. ``jobs.segments``,
  ``result_text`` and ``speakers`` always hold the latest, ``jobs.revision`` its number (0: never edited).
- ``jobs.name_speakers`` (name the voices the library knows; on by default) and ``jobs.known_speakers``
  (null: every person of the library may be named; else only these names).
- ``webhook_deliveries.event``: null for the job's final state (as before), ``transcript.revised`` for an
  edit.

A downgrade drops all of it: edited transcripts keep their latest text, the library and its prints are gone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "speakers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("name_key", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_speakers")),
    )
    op.create_index("ux_speakers_name_key", "speakers", ["name_key"], unique=True)
    op.create_table(
        "voice_prints",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("speaker_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("sample_job_id", sa.String(36), nullable=True),
        sa.Column("filename", sa.String(512), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["speaker_id"],
            ["speakers.id"],
            name=op.f("fk_voice_prints_speaker_id_speakers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_voice_prints_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_prints")),
    )
    op.create_index(op.f("ix_voice_prints_speaker_id"), "voice_prints", ["speaker_id"])
    op.create_index(op.f("ix_voice_prints_job_id"), "voice_prints", ["job_id"])
    op.create_index(op.f("ix_voice_prints_sample_job_id"), "voice_prints", ["sample_job_id"])
    op.create_table(
        "job_voices",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_voices_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "label", name=op.f("pk_job_voices")),
    )
    op.create_table(
        "transcript_revisions",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("segments", sa.JSON(), nullable=True),
        sa.Column("speakers", sa.JSON(), nullable=True),
        sa.Column("author", sa.String(255), nullable=True),
        sa.Column("edits", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_transcript_revisions_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "revision", name=op.f("pk_transcript_revisions")),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("name_speakers", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("known_speakers", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("event", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("event")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("revision")
        batch.drop_column("known_speakers")
        batch.drop_column("name_speakers")
    op.drop_table("transcript_revisions")
    op.drop_table("job_voices")
    op.drop_table("voice_prints")
    op.drop_table("speakers")

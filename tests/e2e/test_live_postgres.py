"""The live story of test_live.py on PostgreSQL (a file of its own: the two backends run on two test workers
at once): its first 42 s at speaking pace, through the same two kills (SQLite's run of the whole story also
compares its transcript with the file's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_live import postgres_schema, story_through_faults

pytestmark = [pytest.mark.timeout(600), pytest.mark.postgres]


def test_the_story_at_speaking_pace_on_postgres_survives_a_killed_worker_and_a_restarted_api(
    postgres_server_url: str, tmp_path: Path
) -> None:
    with postgres_schema(postgres_server_url) as db:
        story_through_faults(db, tmp_path, seconds=42)

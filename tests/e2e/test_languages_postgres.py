"""The languages of test_languages.py through `cesar serve` on PostgreSQL (a file of its own, so that the two
backends run on two test workers at once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_languages import languages_story
from test_live import postgres_schema

pytestmark = [pytest.mark.timeout(600), pytest.mark.postgres]


def test_languages_on_postgres(postgres_server_url: str, tmp_path: Path) -> None:
    with postgres_schema(postgres_server_url) as db:
        languages_story(db, tmp_path)

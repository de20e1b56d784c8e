"""Database layer: models, engine, migrations and the job store."""

from __future__ import annotations

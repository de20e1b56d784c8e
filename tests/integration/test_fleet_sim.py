"""bench/fleet_sim.py in miniature, so the simulation cannot rot: a few workers, real databases, no loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parents[2] / "bench" / "fleet_sim.py"
SMALL = ["--workers", "6", "--jobs", "24", "--processes", "2", "--min-seconds", "0.2", "--max-seconds", "0.6",
         "--segment-seconds", "0.2", "--timeout", "240"]  # fmt: skip


def simulate(*args: str, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(
        [sys.executable, str(SIM), *SMALL, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


@pytest.mark.postgres
def test_the_simulation_on_postgresql_loses_nothing_even_when_a_process_is_killed(
    postgres_server_url: str,
) -> None:
    last = simulate(
        "--kill", "0.5", "--lease-seconds", "3", env={"CESAR_TEST_POSTGRES_URL": postgres_server_url}
    )
    assert last.startswith("fleet: 6 workers,") and last.endswith("lost 0, duplicated 0")


def test_the_simulation_on_sqlite_loses_nothing() -> None:
    last = simulate("--backend", "sqlite")
    assert last.startswith("fleet: 6 workers,") and last.endswith("lost 0, duplicated 0")

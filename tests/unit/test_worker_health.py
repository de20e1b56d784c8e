"""How /health shows a worker's presence row: its models with what they take, whatever the row holds."""

from __future__ import annotations

from datetime import UTC, datetime

from cesar_api.routes.health import worker_health
from cesar_common.db.records import WorkerRecord

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MB = 2**20


def row(memory: object, models: list[str] | None = None) -> WorkerRecord:
    return WorkerRecord(
        "box:42", "box", 42, NOW, NOW, None, ["tiny.en"] if models is None else models, memory
    )  # type: ignore[arg-type]


def test_a_worker_that_reports_its_memory() -> None:
    memory = {
        "budget_bytes": 4096 * MB,
        "max_models": None,
        "rss_bytes": 401 * MB + 1000,
        "loads": 3,
        "unloads": 1,
        "models": [
            {
                "name": "tiny.en",
                "device": "cpu",
                "compute_type": "int8",
                "estimated_bytes": 72 * MB,
                "measured_bytes": None,
            },
            {
                "name": "base",
                "device": "cpu",
                "compute_type": "int8",
                "estimated_bytes": 138 * MB,
                "measured_bytes": 126 * MB,
            },
        ],
    }
    shown = worker_health(row(memory, ["tiny.en", "base"])).model_dump()
    assert shown["models"] == [
        {"name": "tiny.en", "device": "cpu", "compute_type": "int8", "estimated_mb": 72, "measured_mb": None},
        {"name": "base", "device": "cpu", "compute_type": "int8", "estimated_mb": 138, "measured_mb": 126},
    ]
    assert (shown["memory_budget_mb"], shown["max_models"], shown["rss_mb"]) == (4096, None, 401)
    assert (shown["model_loads"], shown["model_unloads"]) == (3, 1)


def test_a_worker_that_reports_only_names_or_nonsense() -> None:
    for memory in (None, {"models": "x", "budget_bytes": "lots", "loads": True, "rss_bytes": [1]}):
        shown = worker_health(row(memory)).model_dump()
        assert shown["models"] == [
            {
                "name": "tiny.en",
                "device": None,
                "compute_type": None,
                "estimated_mb": None,
                "measured_mb": None,
            }
        ]
        assert shown["memory_budget_mb"] is shown["rss_mb"] is shown["model_loads"] is None


def test_cesar_remote_health_prints_a_line_a_worker() -> None:
    from cesar.remote.commands import _worker_line

    memory = {
        "budget_bytes": 160 * MB,
        "rss_bytes": 384 * MB,
        "models": [{"name": "base", "estimated_bytes": 138 * MB, "measured_bytes": 113 * MB}],
    }
    shown = worker_health(row(memory, ["base"])).model_dump()
    assert _worker_line(shown) == "box:42: base (113 MiB); budget 160 MiB, resident 384 MiB"
    assert _worker_line(worker_health(row(None, ["tiny.en"])).model_dump()) == "box:42: tiny.en"
    assert _worker_line(worker_health(row(None, [])).model_dump()) == "box:42: no model loaded"

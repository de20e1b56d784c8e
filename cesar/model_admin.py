"""What ``cesar models`` does, over :mod:`cesar_common.transcription.model_store`."""

from __future__ import annotations

from pathlib import Path

from cesar_common.settings import get_settings
from cesar_common.transcription import model_store
from cesar_common.transcription.model_store import ModelEntry, RemovedPartial

__all__ = ["import_into", "list_entries", "pull_into", "remove_from", "removed_lines", "table"]


def _models_dir(models_dir: Path | None) -> Path:
    return get_settings(models_dir=models_dir).models_dir


def list_entries(models_dir: Path | None) -> tuple[list[ModelEntry], list[RemovedPartial]]:
    """The models, and what imports or pulls that did not finish had left (removed first)."""
    settings = get_settings(models_dir=models_dir)
    removed = model_store.remove_stale_partials(settings.models_dir)
    return model_store.list_models(settings.allowed_models, settings.models_dir), removed


def removed_lines(removed: list[RemovedPartial]) -> list[str]:
    return [
        f"removed {item.path} ({item.size_bytes / 1e6:,.0f} MB): what an import or pull that did not "
        "finish left behind"
        for item in removed
    ]


def table(entries: list[ModelEntry]) -> str:
    rows = [("MODEL", "ON THIS MACHINE", "SIZE", "LOCATION")]
    for entry in entries:
        size = "" if entry.size_bytes is None else f"{entry.size_bytes / 1e6:,.0f} MB"
        rows.append((entry.name, "yes" if entry.present else "no", size, entry.location or entry.source))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]
        ).rstrip()
        for row in rows
    )


def pull_into(name: str, models_dir: Path | None) -> tuple[Path, list[RemovedPartial]]:
    from cesar_common.transcription.loading import pull_model

    directory = _models_dir(models_dir)
    removed = model_store.remove_stale_partials(directory)
    return pull_model(name, directory), removed


def import_into(
    path: Path, name: str | None, models_dir: Path | None
) -> tuple[Path, str, list[RemovedPartial]]:
    settings = get_settings(models_dir=models_dir)
    removed = model_store.remove_stale_partials(settings.models_dir)
    chosen = name or path.name.removesuffix(".tar.gz").removesuffix(".tgz")
    stored = model_store.import_model(
        path.expanduser(), chosen, settings.models_dir, max_bytes=settings.max_model_import_bytes
    )
    return stored, chosen, removed


def remove_from(name: str, models_dir: Path | None) -> Path:
    return model_store.remove_model(name, _models_dir(models_dir))

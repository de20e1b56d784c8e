"""What `GET /v1/models` asks on every request, whether each model's files are on this host, is looked up
once and again only when the models directory changes (or the answers are old), not per request."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from litestar.testing import TestClient

from cesar_api.app import create_app
from cesar_common.settings import Settings
from cesar_common.transcription import model_store
from cesar_common.transcription.model_store import PresenceCache


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names looked up on disk (model_store's one way to find a model's files)."""
    looked: list[str] = []
    real = model_store._locate

    def counted(name: str, models_dir: Path) -> tuple[Path, str] | None:
        looked.append(name)
        return real(name, models_dir)

    monkeypatch.setattr(model_store, "_locate", counted)
    return looked


def add_model(models_dir: Path, name: str) -> None:
    """As an import does: built beside, then renamed into the models directory."""
    staging = models_dir / f".partial-{name}"
    staging.mkdir(parents=True)
    (staging / "model.bin").write_bytes(b"weights")
    staging.rename(models_dir / name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answers_are_reused_until_the_models_directory_changes(tmp_path: Path, lookups: list[str]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    clock = Clock()
    cache = PresenceCache(models, max_age=30, clock=clock)
    names = ["newsroom", "tiny.en"]
    assert cache.fresh(names) is None
    assert cache.refresh(names) == {"newsroom": False, "tiny.en": True}
    for _ in range(100):
        assert cache.fresh(names) == {"newsroom": False, "tiny.en": True}
    assert lookups == names

    add_model(models, "newsroom")
    assert cache.fresh(names) is None
    assert cache.refresh(names) == {"newsroom": True, "tiny.en": True}
    shutil.rmtree(models / "newsroom")
    assert cache.fresh(names) is None
    assert cache.refresh(names)["newsroom"] is False

    clock.now += 31  # a model elsewhere (a path, the Hugging Face cache) is looked at again in time
    assert cache.fresh(names) is None
    assert cache.fresh(["a name never asked for"]) is None


def test_the_models_route_looks_up_once_and_sees_an_import(
    tmp_path: Path, sqlite_url: str, lookups: list[str]
) -> None:
    models = tmp_path / "models"
    # a migrated database: every route reads the keys (once in a while) to know who calls
    settings = Settings(database_url=sqlite_url, models=["newsroom"], models_dir=models)
    with TestClient(create_app(settings)) as client:
        for _ in range(20):
            listed = client.get("/v1/models").json()["data"]
            assert {model["id"]: model["present"] for model in listed} == {
                "whisper-1": True,
                "newsroom": False,
                "tiny.en": True,
            }
            assert client.get("/v1/models/newsroom").json()["present"] is False
        assert sorted(lookups) == ["newsroom", "tiny.en"]

        add_model(models, "newsroom")
        assert client.get("/v1/models/newsroom").json()["present"] is True
        assert len(lookups) == 4

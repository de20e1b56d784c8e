"""The worker's LRU of loaded models."""

from __future__ import annotations

import pytest

from cesar_worker.model_cache import ModelCache, ModelKey


def key(name: str, device: str = "cpu", compute_type: str = "int8") -> ModelKey:
    return ModelKey(name, device, compute_type)


class Loader:
    def __init__(self) -> None:
        self.loaded: list[ModelKey] = []

    def __call__(self, k: ModelKey) -> str:
        self.loaded.append(k)
        return f"model {k.name}/{k.device}/{k.compute_type}"


def test_a_loaded_model_is_reused() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity=1)
    first = cache.get(key("tiny.en"))
    assert cache.get(key("tiny.en")) is first
    assert loader.loaded == [key("tiny.en")]
    assert cache.names() == ["tiny.en"]


def test_switching_models_evicts_the_least_recently_used() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity=2)
    cache.get(key("a"))
    cache.get(key("b"))
    cache.get(key("a"))  # b is now the least recently used
    cache.get(key("c"))
    assert cache.names() == ["a", "c"]
    assert len(cache) == 2
    cache.get(key("b"))
    assert loader.loaded == [key("a"), key("b"), key("c"), key("b")]


def test_device_and_compute_type_are_part_of_the_key() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity=2)
    cache.get(key("tiny.en", compute_type="int8"))
    cache.get(key("tiny.en", compute_type="float32"))
    assert len(loader.loaded) == 2


def test_eviction_happens_before_the_next_load() -> None:
    seen: list[int] = []
    cache: ModelCache[str]

    def loader(k: ModelKey) -> str:
        seen.append(len(cache))  # models in memory while this one loads
        return k.name

    cache = ModelCache(loader, capacity=1)
    cache.get(key("a"))
    cache.get(key("b"))
    assert seen == [0, 0]


def test_a_failed_load_leaves_the_cache_usable() -> None:
    def loader(k: ModelKey) -> str:
        if k.name == "broken":
            raise RuntimeError("no such model")
        return k.name

    cache = ModelCache(loader, capacity=1)
    with pytest.raises(RuntimeError):
        cache.get(key("broken"))
    assert cache.get(key("ok")) == "ok"
    cache.clear()
    assert cache.names() == []


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ModelCache(Loader(), capacity=0)


def test_a_model_that_cannot_be_found_evicts_nothing() -> None:
    def prepare(k: ModelKey) -> None:
        if k.name == "missing":
            raise LookupError("not on this machine")

    loader = Loader()
    cache = ModelCache(loader, capacity=1, prepare=prepare)
    cache.get(key("tiny.en"))
    with pytest.raises(LookupError):
        cache.get(key("missing"))
    assert cache.names() == ["tiny.en"]
    assert loader.loaded == [key("tiny.en")]

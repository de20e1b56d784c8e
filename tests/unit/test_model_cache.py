"""The worker's LRU of loaded models: its count, its memory budget, models in use, measurements."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from pathlib import Path

import pytest

from cesar_common.errors import ModelTooLargeError
from cesar_common.transcription.loading import resolve_model
from cesar_worker import model_memory
from cesar_worker.model_cache import ModelCache, ModelKey

MB = 1024 * 1024


def key(name: str, device: str = "cpu", compute_type: str = "int8") -> ModelKey:
    return ModelKey(name, device, compute_type)


class Model:
    """A loaded model: a fresh object each load, held by nothing but the cache unless a test holds it."""

    def __init__(self, k: ModelKey) -> None:
        self.key = k

    @property
    def name(self) -> str:
        return self.key.name


class Loader:
    def __init__(self) -> None:
        self.loaded: list[ModelKey] = []

    def __call__(self, k: ModelKey) -> Model:
        self.loaded.append(k)
        return Model(k)


def sizes(**megabytes: int) -> dict[str, int]:
    return {name: size * MB for name, size in megabytes.items()}


def test_a_loaded_model_is_reused() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity=1)
    first = cache.get(key("tiny.en"))
    assert cache.get(key("tiny.en")) is first
    assert loader.loaded == [key("tiny.en")]
    assert cache.names() == ["tiny.en"]
    assert (cache.loads, cache.unloads) == (1, 0)


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
    assert (cache.loads, cache.unloads) == (4, 2)


def test_device_and_compute_type_are_part_of_the_key() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity=2)
    cache.get(key("tiny.en", compute_type="int8"))
    cache.get(key("tiny.en", compute_type="float32"))
    assert len(loader.loaded) == 2


def test_eviction_happens_before_the_next_load() -> None:
    seen: list[int] = []
    cache: ModelCache[Model]

    def loader(k: ModelKey) -> Model:
        seen.append(len(cache))  # models in memory while this one loads
        return Model(k)

    cache = ModelCache(loader, capacity=1)
    cache.get(key("a"))
    cache.get(key("b"))
    assert seen == [0, 0]


def test_a_failed_load_leaves_the_cache_usable() -> None:
    def loader(k: ModelKey) -> Model:
        if k.name == "broken":
            raise RuntimeError("no such model")
        return Model(k)

    cache = ModelCache(loader, capacity=1)
    with pytest.raises(RuntimeError):
        cache.get(key("broken"))
    assert cache.get(key("ok")).name == "ok"
    cache.clear()
    assert cache.names() == []


def test_no_count_and_no_budget_keep_every_model() -> None:
    cache = ModelCache(Loader())
    for name in "abcde":
        cache.get(key(name))
    assert cache.names() == list("abcde")
    with pytest.raises(ValueError):
        ModelCache(Loader(), capacity=-1)
    with pytest.raises(ValueError):
        ModelCache(Loader(), budget_bytes=0)


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


def test_the_budget_unloads_the_least_recently_used_until_the_next_one_fits() -> None:
    size = sizes(small=100, medium=300, large=500)
    loader = Loader()
    cache = ModelCache(loader, budget_bytes=800 * MB, prepare=lambda k: size[k.name])
    cache.get(key("small"))
    cache.get(key("medium"))
    cache.get(key("small"))  # medium is the least recently used now
    assert cache.used_bytes() == 400 * MB
    cache.get(key("large"))  # 900 MB: medium goes, small (more recent) stays
    assert cache.names() == ["small", "large"]
    assert cache.used_bytes() == 600 * MB
    cache.get(key("medium"))  # 900 MB again: small, the least recently used, goes
    assert cache.names() == ["large", "medium"]
    assert [k.name for k in loader.loaded] == ["small", "medium", "large", "medium"]
    assert [(info.key.name, info.estimated_bytes) for info in cache.loaded()] == [
        ("large", 500 * MB),
        ("medium", 300 * MB),
    ]


def test_the_count_and_the_budget_both_hold() -> None:
    cache = ModelCache(Loader(), capacity=2, budget_bytes=1000 * MB, prepare=lambda k: 100 * MB)
    for name in "abc":
        cache.get(key(name))
    assert cache.names() == ["b", "c"]


def test_a_model_larger_than_the_budget_is_refused_and_unloads_nothing() -> None:
    size = sizes(tiny=70, huge=1500)
    loader = Loader()
    cache = ModelCache(loader, budget_bytes=1024 * MB, prepare=lambda k: size[k.name])
    cache.get(key("tiny"))
    with pytest.raises(ModelTooLargeError) as caught:
        cache.get(key("huge"))
    assert str(caught.value) == (
        "model 'huge' needs ~1500 MB on cpu (int8), the worker's budget is 1024 MB "
        "(CESAR_WORKER_MODEL_MEMORY_MB)"
    )
    assert caught.value.code == "model_too_large"
    assert cache.names() == ["tiny"] and len(loader.loaded) == 1


def test_the_measured_growth_corrects_the_estimate_within_bounds() -> None:
    rss = [1000 * MB]
    growth = {"a": 150 * MB, "b": 900 * MB, "c": 10 * MB}

    def loader(k: ModelKey) -> Model:
        rss[0] += growth[k.name]
        return Model(k)

    cache = ModelCache(loader, prepare=lambda k: 100 * MB, measure=lambda: rss[0])
    for name in "abc":
        cache.get(key(name))
    infos = {info.key.name: info for info in cache.loaded()}
    assert infos["a"].measured_bytes == 150 * MB and infos["a"].accounted_bytes == 150 * MB
    # a growth far from the estimate (a decode on another thread, say) is trusted only so far
    assert infos["b"].measured_bytes == 900 * MB and infos["b"].accounted_bytes == 200 * MB
    assert infos["c"].accounted_bytes == 50 * MB
    assert cache.used_bytes() == 400 * MB


def test_a_model_measured_once_is_judged_by_its_measurement_next_time() -> None:
    rss = [0]

    def loader(k: ModelKey) -> Model:
        rss[0] += 180 * MB  # it takes more than its estimate of 100 MB
        return Model(k)

    cache = ModelCache(
        loader, capacity=1, budget_bytes=150 * MB, prepare=lambda k: 100 * MB, measure=lambda: rss[0]
    )
    cache.get(key("a"))  # fits by its estimate, loads, and is measured at 180 MB (within twice 100)
    cache.get(key("b"))
    with pytest.raises(ModelTooLargeError, match="model 'a' needs ~180 MB"):
        cache.get(key("a"))


def test_a_model_in_use_is_not_unloaded_and_the_next_loads_beyond_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loader = Loader()
    cache = ModelCache(loader, budget_bytes=250 * MB, prepare=lambda k: 100 * MB)
    live = cache.get(key("a"))  # a live session decodes with it
    cache.get(key("b"))
    with caplog.at_level(logging.WARNING):
        cache.get(key("c"))  # 300 MB: b (free) goes, a stays though it is the least recently used
    assert cache.names() == ["a", "c"]
    with caplog.at_level(logging.WARNING):
        cache.get(key("b"))  # c is free and goes; a, in use, stays
    # no warning (an earlier test in this process may have set the logger to show INFO records)
    assert cache.names() == ["a", "b"]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    only = ModelCache(loader, capacity=1)
    held = only.get(key("x"))
    with caplog.at_level(logging.WARNING):
        only.get(key("y"))
    assert only.names() == ["x", "y"]
    assert "beyond the worker's limits" in caplog.text
    del held
    only.get(key("z"))  # x is free again: it goes first
    assert only.names() == ["z"]
    # the live session asks again: the same model, never a second copy
    assert cache.get(key("a")) is live


def test_an_in_use_hook_sees_parts_of_a_model_held_elsewhere() -> None:
    parts: dict[str, object] = {}

    def loader(k: ModelKey) -> Model:
        model = Model(k)
        parts[k.name] = model.weights = object()  # type: ignore[attr-defined]
        return model

    cache = ModelCache(
        loader,
        capacity=1,
        in_use=lambda model: model.weights is parts.get(model.name),  # type: ignore[attr-defined]
    )
    cache.get(key("a"))
    cache.get(key("b"))
    assert cache.names() == ["a", "b"]
    parts.clear()
    cache.get(key("c"))
    assert cache.names() == ["c"]


def test_an_unloaded_model_is_freed() -> None:
    cache = ModelCache(Loader(), capacity=1)
    first = weakref.ref(cache.get(key("a")))
    gc.collect()
    assert first() is not None
    cache.get(key("b"))
    assert first() is None  # nothing else kept it: its native memory goes with it


def test_two_threads_asking_for_one_model_load_it_once() -> None:
    loader = Loader()
    started = threading.Event()

    def slow(k: ModelKey) -> Model:
        started.set()
        time.sleep(0.2)
        return loader(k)

    cache = ModelCache(slow)
    got: list[Model] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(key("a")))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loader.loaded) == 1 and len({id(model) for model in got}) == 1


# --- estimates from a model's files ------------------------------------------------------------------
def test_the_weights_are_counted_from_the_model_files_header() -> None:
    tiny = Path(resolve_model("tiny.en", offline=True)) / "model.bin"
    weights, stored = model_memory.weight_count(tiny)
    assert stored == "float16"
    assert 37_000_000 < weights < 38_500_000  # Whisper tiny: 39 M parameters, some of them shared
    assert weights * 2 <= tiny.stat().st_size < weights * 2 + 1_000_000
    estimate = model_memory.estimate_model_bytes(tiny.parent, "int8")
    assert 70 * MB < estimate < 80 * MB  # 68-70 MiB measured (bench/model_memory.py)
    assert model_memory.estimate_model_bytes(tiny.parent, "float32") == int(weights * 4.8)
    assert model_memory.estimate_model_bytes(tiny.parent, "default") == int(weights * 2.2)


def test_a_file_the_reader_does_not_know_counts_as_float16(tmp_path: Path) -> None:
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"\x02\x00\x00\x00" + b"x" * 996)
    assert model_memory.weight_count(odd) == (500, "float16")
    assert model_memory.weight_count(tmp_path / "missing.bin") == (0, "float16")


def test_the_automatic_budget_is_half_the_memory_shared_by_the_workers() -> None:
    assert model_memory.auto_budget_bytes(1, memory=16 * 1024 * MB) == 8 * 1024 * MB
    assert model_memory.auto_budget_bytes(4, memory=16 * 1024 * MB) == 2 * 1024 * MB
    assert 0 < model_memory.auto_budget_bytes() <= model_memory.machine_memory() // 2

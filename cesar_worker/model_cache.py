"""Loaded models kept between jobs: a small LRU keyed by (model, device, compute type).

Loading a Whisper model costs from half a second (tiny) to tens of seconds (large) and a lot of memory, so a
worker keeps the last few (``CESAR_WORKER_MODELS``, default 1) and evicts the least recently used one
*before* loading another, so memory never holds more than the bound. An optional ``prepare(key)`` runs before
that eviction (finding or downloading the model files), so a model that cannot be had costs nothing loaded.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ModelCache", "ModelKey"]

log = logging.getLogger(__name__)

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class ModelKey:
    name: str
    device: str
    compute_type: str


class ModelCache(Generic[M]):
    """At most ``capacity`` models, loaded on demand with ``load(key)``."""

    def __init__(
        self,
        load: Callable[[ModelKey], M],
        *,
        capacity: int = 1,
        prepare: Callable[[ModelKey], object] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._load = load
        self._prepare = prepare
        self.capacity = capacity
        self._models: OrderedDict[ModelKey, M] = OrderedDict()
        self._lock = threading.Lock()  # names() is read by the heartbeat thread

    def get(self, key: ModelKey) -> M:
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
        if self._prepare is not None:
            self._prepare(key)
        with self._lock:
            evicted = []
            while len(self._models) >= self.capacity:
                evicted.append(self._models.popitem(last=False)[0])
        if evicted:
            for old in evicted:
                log.info("unloading model %s (%s, %s)", old.name, old.device, old.compute_type)
            gc.collect()  # let the native weights go before the next model arrives
        model = self._load(key)
        with self._lock:
            self._models[key] = model
        return model

    def names(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return [key.name for key in self._models]

    def keys(self) -> list[ModelKey]:
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
        gc.collect()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, key: object) -> bool:
        return key in self._models

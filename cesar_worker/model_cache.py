"""Loaded models kept between jobs: an LRU keyed by (model, device, compute type), held within a memory
budget and, optionally, a count.

Loading a Whisper model costs from half a second (tiny) to tens of seconds (large) and a lot of memory, so a
worker keeps the models its jobs asked for, each loaded once, as long as they fit together in its budget
(``CESAR_WORKER_MODEL_MEMORY_MB``) and its count (``CESAR_WORKER_MODELS``, 0: no count). Before a model is
loaded, ``prepare(key)`` finds its files (downloading them if need be: a model that cannot be had costs
nothing loaded) and says what it will take in memory; the least recently used models are unloaded *before*
it loads, until it fits, and their memory is handed back to the system. A model that would not fit even
alone is refused with :class:`ModelTooLargeError`, never loaded to be killed for it. After the load, the
process's resident memory is read again: what it grew by corrects the estimate, for the budget and for the
next time that model loads.

A model still in use elsewhere (a live session decoding with it, on another thread) is never unloaded for
room: dropping the cache's reference would free nothing, and the next job asking for it would load a second
copy. It is unloaded once it is free again and the least recently used. When only such models stand in the
way, the new one loads beyond the budget, and says so in the log.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cesar_common.errors import ModelTooLargeError
from cesar_worker.model_memory import release_memory

__all__ = ["BUDGET_SETTING", "LoadedInfo", "ModelCache", "ModelKey"]

log = logging.getLogger(__name__)

M = TypeVar("M")
MIB = 1024 * 1024
#: the setting that sets the budget, as the refusal of a model too large names it
BUDGET_SETTING = "CESAR_WORKER_MODEL_MEMORY_MB"


@dataclass(frozen=True, slots=True)
class ModelKey:
    name: str
    device: str
    compute_type: str


@dataclass(frozen=True, slots=True)
class LoadedInfo:
    """A loaded model as the worker's presence row shows it."""

    key: ModelKey
    #: what it was expected to take, from its files (0: unknown)
    estimated_bytes: int
    #: what the process's resident memory grew by as it loaded (None: not measured)
    measured_bytes: int | None
    #: what the budget counts it as: the measurement, kept within half and twice the estimate
    accounted_bytes: int


@dataclass(slots=True)
class _Entry(Generic[M]):
    model: M
    info: LoadedInfo


class ModelCache(Generic[M]):
    """Models loaded on demand with ``load(key)``: at most ``capacity`` of them (0: any number) taking at
    most ``budget_bytes`` together (None: no budget).

    ``prepare(key)``: runs before any model is unloaded for this one; returns its estimated size in bytes
    (None or 0: unknown, counted as nothing until measured). ``measure()``: the process's resident memory,
    read before and after each load. ``in_use(model)``: whether parts of a model are held outside the cache
    (the model object itself is checked by the cache).
    """

    def __init__(
        self,
        load: Callable[[ModelKey], M],
        *,
        capacity: int = 0,
        budget_bytes: int | None = None,
        prepare: Callable[[ModelKey], int | None] | None = None,
        measure: Callable[[], int] | None = None,
        in_use: Callable[[M], bool] | None = None,
    ) -> None:
        if capacity < 0:
            raise ValueError("capacity must be 0 (no limit) or more")
        if budget_bytes is not None and budget_bytes < 1:
            raise ValueError("a memory budget must be positive")
        self._load = load
        self._prepare = prepare
        self._measure = measure
        self._in_use = in_use
        self.capacity = capacity
        self.budget_bytes = budget_bytes
        self.loads = 0
        self.unloads = 0
        self._entries: OrderedDict[ModelKey, _Entry[M]] = OrderedDict()
        self._measured: dict[ModelKey, int] = {}  # what each model took when it last loaded
        self._lock = threading.Lock()  # the entries: the heartbeat thread reads them
        self._loading = threading.Lock()  # one load at a time: two threads asking for one model load it once

    # --- getting a model -------------------------------------------------------------------------
    def get(self, key: ModelKey) -> M:
        model = self._hit(key)
        if model is not None:
            return model
        with self._loading:
            model = self._hit(key)  # another thread loaded it while this one waited
            if model is not None:
                return model
            estimate = (self._prepare(key) if self._prepare is not None else None) or 0
            need = self._measured.get(key, estimate)
            if self.budget_bytes is not None and need > self.budget_bytes:
                raise ModelTooLargeError(
                    f"model '{key.name}' needs ~{_mib(need)} MB on {key.device} ({key.compute_type}), "
                    f"the worker's budget is {_mib(self.budget_bytes)} MB ({BUDGET_SETTING})"
                )
            self._make_room(key, need)
            before = self._measure() if self._measure is not None else None
            model = self._load(key)
            grown = None if before is None or self._measure is None else max(0, self._measure() - before)
            info = LoadedInfo(key, estimate, grown, _accounted(estimate, grown))
            self._measured[key] = info.accounted_bytes
            with self._lock:
                self._entries[key] = _Entry(model, info)
                self.loads += 1
            log.info(
                "model %s (%s, %s) takes %s MB (estimated %s MB); %d loaded, %s MB of %s",
                key.name,
                key.device,
                key.compute_type,
                "?" if grown is None else _mib(grown),
                _mib(estimate),
                len(self._entries),
                _mib(self.used_bytes()),
                "no budget" if self.budget_bytes is None else f"{_mib(self.budget_bytes)} MB",
            )
            return model

    def _hit(self, key: ModelKey) -> M | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.model

    def _fits(self, need: int) -> bool:
        if self.capacity and len(self._entries) >= self.capacity:
            return False
        return self.budget_bytes is None or self._used() + need <= self.budget_bytes

    def _make_room(self, key: ModelKey, need: int) -> None:
        """Unload the least recently used models not in use until ``need`` more bytes fit."""
        unloaded: list[LoadedInfo] = []
        with self._lock:
            for old in list(self._entries):
                if self._fits(need):
                    break
                if self._held_elsewhere(self._entries[old]):
                    continue
                unloaded.append(self._entries.pop(old).info)  # the model goes with its entry
                self.unloads += 1
            fits = self._fits(need)
        for info in unloaded:
            log.info(
                "unloading model %s (%s, %s, %s MB) to make room for %s",
                info.key.name,
                info.key.device,
                info.key.compute_type,
                _mib(info.accounted_bytes),
                key.name,
            )
        if unloaded:
            release_memory()  # the native weights go before the next model arrives
        if not fits:
            log.warning(
                "loading model %s beyond the worker's limits (%s MB of %s, %d models): the models in the way "
                "are in use (live sessions) and are unloaded once free",
                key.name,
                _mib(self.used_bytes() + need),
                "no budget" if self.budget_bytes is None else f"{_mib(self.budget_bytes)} MB",
                len(self._entries) + 1,
            )

    def _held_elsewhere(self, entry: _Entry[M]) -> bool:
        # two references when only the entry holds it: the entry's own, and getrefcount's argument
        if sys.getrefcount(entry.model) > 2:
            return True
        return self._in_use is not None and self._in_use(entry.model)

    # --- what is loaded ------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return [key.name for key in self._entries]

    def keys(self) -> list[ModelKey]:
        with self._lock:
            return list(self._entries)

    def loaded(self) -> list[LoadedInfo]:
        """The loaded models and their memory, least recently used first."""
        with self._lock:
            return [entry.info for entry in self._entries.values()]

    def used_bytes(self) -> int:
        with self._lock:
            return self._used()

    def _used(self) -> int:
        return sum(entry.info.accounted_bytes for entry in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self.unloads += len(self._entries)
            self._entries.clear()
        release_memory()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


def _accounted(estimate: int, measured: int | None) -> int:
    """What the budget counts a model as: its measurement, trusted within half and twice the estimate (a
    decode on another thread while it loaded moves the process's memory too)."""
    if measured is None:
        return estimate
    if estimate <= 0:
        return measured
    return min(max(measured, estimate // 2), estimate * 2)


def _mib(value: int) -> int:
    return round(value / MIB)

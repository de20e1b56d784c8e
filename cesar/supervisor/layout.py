"""How many workers `cesar serve` starts, with how many threads, on which device.

:func:`plan_layout` is a pure function of the machine's facts (cores, memory, GPUs, model size), so every
rule is tested with injected facts; :func:`machine_facts` gathers the real ones.

Why one thread per worker on CPU: on a 2-core machine with ``tiny.en`` int8, ten 7 s jobs took 4.3 s as two
processes x one thread, but 6.6 s in one process with faster-whisper's default threads: CTranslate2 scales
poorly across threads for small models, while separate processes do not share anything.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cesar_common.errors import DeviceUnavailableError, InvalidInputError
from cesar_common.text import plain_number
from cesar_common.transcription.loading import model_files_bytes

__all__ = [
    "FAMILY_BYTES",
    "Layout",
    "estimate_model_memory",
    "machine_facts",
    "model_bytes_for",
    "model_family",
    "model_files_bytes",
    "parse_workers",
    "plan_layout",
]

logger = logging.getLogger(__name__)

#: Share of the available memory the workers' models may use together.
MEMORY_SHARE = 0.70
#: A loaded model takes about this many times its files' size (int8 weights, decoder caches, decoded audio)...
MODEL_MEMORY_FACTOR = 1.5
#: ...plus the worker process itself: Python, CTranslate2, PyAV, SQLAlchemy, decoding buffers.
PROCESS_OVERHEAD_BYTES = 280 * 1024 * 1024
# Calibration (2-core x86, tiny.en int8 on CPU, model files 78 MB): a real `cesar serve` worker peaked at
# 396 MB RSS (VmHWM) after speech_en_long.flac (70 s) and speech_en.wav, 334 MB resident afterwards; a bare
# faster-whisper process peaked at 346 MB. Estimate: 1.5 x 78 MB + 280 MiB = 411 MB.

#: Sizes of the standard models' files (float16 CTranslate2 conversions) by architecture family, used when a
#: model is not on disk yet, so the layout can be planned before the first download. Which names there are
#: is faster-whisper's to say (:func:`known_model_bytes`).
FAMILY_BYTES: Mapping[str, int] = {
    "tiny": 78_000_000,
    "base": 148_000_000,
    "small": 488_000_000,
    "medium": 1_530_000_000,
    "large": 3_090_000_000,
    "turbo": 1_620_000_000,
    "distil-small": 337_000_000,
    "distil-medium": 790_000_000,
    "distil-large": 1_510_000_000,
}
#: For a model whose size cannot be known: assume a large one, so memory is never overcommitted.
UNKNOWN_MODEL_BYTES = 3_090_000_000


@dataclass(frozen=True)
class MachineFacts:
    """What the layout depends on. Built by :func:`machine_facts`, or by hand in tests."""

    cpu_count: int
    available_memory: int
    gpu_count: int = 0
    #: Ids to put in CUDA_VISIBLE_DEVICES, one per visible GPU (default ``0..gpu_count-1``).
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """The processes to start: ``workers`` workers, each with ``threads`` CPU threads on ``device``."""

    workers: int
    threads: int
    device: str
    compute_type: str
    model: str = ""
    #: Why this layout: printed in the log at start.
    reason: str = ""
    #: Extra environment per worker (``len(worker_env) == workers``), e.g. CUDA_VISIBLE_DEVICES.
    worker_env: tuple[Mapping[str, str], ...] = field(default=())

    def describe(self) -> str:
        """One line such as ``2 workers x 1 thread, cpu int8, tiny.en``."""
        if self.workers == 0:
            return "no workers (API only)"
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        text = f"{workers} x {threads}, {self.device} {self.compute_type}"
        return f"{text}, {self.model}" if self.model else text


def estimate_model_memory(model_bytes: int) -> int:
    """Resident memory of one worker holding a model whose files take ``model_bytes``."""
    return int(model_bytes * MODEL_MEMORY_FACTOR) + PROCESS_OVERHEAD_BYTES


def parse_workers(workers: str | int) -> int | None:
    """``"auto"`` -> None, ``"2"`` -> 2; anything else is an InvalidInputError."""
    text = str(workers).strip().lower()
    if text == "auto":
        return None
    count = plain_number(text)
    if count is None:
        raise InvalidInputError(
            f"--workers must be 'auto' or a number of workers (0 or more), not {workers!r}"
        )
    return count


def plan_layout(
    *,
    workers: str | int,
    threads: int,
    device: str,
    cpu_count: int,
    available_memory: int,
    model_bytes: int,
    gpu_count: int,
    compute_type: str = "auto",
    model: str = "",
    gpu_ids: Sequence[str] = (),
) -> Layout:
    """Choose the worker layout from the machine's facts.

    CPU, ``workers="auto"``: one worker per ``threads`` cores (``threads`` 0 means 1), no more than fit in
    70% of the available memory, at least one. CUDA (``device="cuda"``, or ``"auto"`` with a GPU): one
    worker per visible GPU, each pinned with CUDA_VISIBLE_DEVICES. An explicit worker count always wins;
    with ``threads`` 0 its workers then share the cores.
    """
    explicit = parse_workers(workers)
    if threads < 0:
        raise InvalidInputError(f"--threads must be 0 or more, not {threads}")
    cpu_count = max(1, cpu_count)
    gpu_ids = tuple(gpu_ids) or tuple(str(index) for index in range(gpu_count))
    use_cuda = device == "cuda" or (device == "auto" and gpu_count > 0)
    if device == "cuda" and gpu_count == 0:
        raise DeviceUnavailableError("--device cuda was asked for, but no CUDA GPU is visible")
    if compute_type == "auto":
        compute_type = "float16" if use_cuda else "int8"
    common: dict[str, Any] = {"compute_type": compute_type, "model": model}

    if explicit == 0:
        return Layout(
            workers=0,
            threads=max(threads, 1),
            device="cuda" if use_cuda else "cpu",
            reason="--workers 0: the API runs alone",
            **common,
        )
    if use_cuda:
        count = explicit if explicit is not None else len(gpu_ids)
        # round-robin when more workers than GPUs are asked for
        env = tuple({"CUDA_VISIBLE_DEVICES": gpu_ids[index % len(gpu_ids)]} for index in range(count))
        reason = f"one worker per GPU ({len(gpu_ids)} visible)" if explicit is None else "explicit --workers"
        return Layout(
            workers=count, threads=max(threads, 1), device="cuda", reason=reason, worker_env=env, **common
        )

    per_worker = estimate_model_memory(model_bytes)
    fit_in_memory = max(1, int(available_memory * MEMORY_SHARE) // per_worker)
    if explicit is not None:
        count = explicit
        threads = threads or max(1, cpu_count // count)
        reason = "explicit --workers"
        if count > fit_in_memory:
            reason += f" (warning: only {fit_in_memory} fit in 70% of available memory)"
    else:
        threads = threads or 1
        by_cores = max(1, cpu_count // threads)
        count = min(by_cores, fit_in_memory)
        reason = f"{cpu_count} cores / {threads} thread{'s' if threads != 1 else ''} per worker"
        if count < by_cores:
            reason += (
                f", capped at {count} by memory ({_mib(available_memory)} MiB available, "
                f"~{_mib(per_worker)} MiB per worker)"
            )
    return Layout(
        workers=count,
        threads=threads,
        device="cpu",
        reason=reason,
        worker_env=tuple({} for _ in range(count)),
        **common,
    )


def _mib(value: int) -> int:
    return value // (1024 * 1024)


# --- the real machine -----------------------------------------------------------------------------
def machine_facts(*, need_gpus: bool = True) -> MachineFacts:
    """Cores this process may use, memory available to it, and visible CUDA GPUs (only if ``need_gpus``)."""
    gpu_count = _cuda_device_count() if need_gpus else 0
    return MachineFacts(
        cpu_count=usable_cpu_count(),
        available_memory=available_memory(),
        gpu_count=gpu_count,
        gpu_ids=_visible_gpu_ids(gpu_count),
    )


def usable_cpu_count() -> int:
    """Cores in this process's affinity mask, lowered by a cgroup (container) CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(count, quota) if quota else count)


def available_memory() -> int:
    """Bytes that can be used without swapping, lowered by a cgroup (container) memory limit."""
    import psutil

    available = int(psutil.virtual_memory().available)
    limit = _cgroup_memory_headroom()
    return min(available, limit) if limit is not None else available


def model_bytes_for(model: str, model_dir: str | Path | None) -> int:
    """Size of a model's files: measured on disk when it is there, else a known figure for its name."""
    if model_dir is not None and Path(model_dir).is_dir():
        return model_files_bytes(model_dir)
    return known_model_bytes(model) or UNKNOWN_MODEL_BYTES


def known_model_bytes(name: str) -> int | None:
    """The size of its family for a model name faster-whisper knows; None for any other name."""
    # only for a model not on disk yet: importing faster-whisper costs `cesar serve` a third of a second
    from cesar_common.transcription.faster_whisper_adapter import available_models

    return FAMILY_BYTES.get(model_family(name)) if name in available_models() else None


def model_family(name: str) -> str:
    """The architecture family of a faster-whisper model name: ``large-v3`` and ``large`` are large,
    ``distil-small.en`` is distil-small, ``large-v3-turbo`` and ``turbo`` are turbo."""
    words = re.sub(r"\.en$|-v[\d.]+", "", name).split("-")
    return "turbo" if "turbo" in words else "-".join(words)


def _cuda_device_count() -> int:
    try:
        import ctranslate2  # heavy, and only needed when a GPU may be used
    except ImportError:
        return 0
    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception as exc:  # a broken driver means no usable GPU, not a crash
        logger.debug("cannot count CUDA devices: %s", exc)
        return 0


def _visible_gpu_ids(gpu_count: int) -> tuple[str, ...]:
    # Keep the ids the user already restricted us to, so worker N gets the N-th GPU *they* allowed.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = tuple(part.strip() for part in visible.split(",") if part.strip())
    if len(ids) >= gpu_count > 0:
        return ids[:gpu_count]
    return tuple(str(index) for index in range(gpu_count))


def _cgroup_cpu_quota() -> int | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def _cgroup_memory_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        current = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    return max(0, int(limit) - current)

"""How much memory a Whisper model takes once loaded, known before loading it; the worker's memory budget;
and handing the memory of an unloaded model back to the system.

A model's estimate is its weights (counted from the header of its ``model.bin``, whatever type they are
stored in) times the resident bytes one weight takes once loaded with the worker's compute type, measured:
loading tiny.en and base (float16 files, 37.8 M and 72.6 M weights) on a 2-core AMD EPYC with CTranslate2
4.8 grew the process's resident memory by 1.86 to 1.94 bytes a weight as int8 and int8_float32, and by
4.66 to 4.78 as float32 (bench/model_memory.py measures it again). The GPU's compute types are not measured
here: their figures are the weights' own size plus a tenth. The worker corrects the estimate with what the
process's resident memory grew by as it loaded the model (:class:`~cesar_worker.model_cache.ModelCache`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import struct
import sys
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "ALONE_SHARE",
    "BYTES_PER_WEIGHT",
    "auto_budget_bytes",
    "estimate_model_bytes",
    "machine_memory",
    "process_rss",
    "release_memory",
    "weight_count",
]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
#: resident bytes a weight takes once loaded, by compute type (CPU types measured; see the module's doc)
BYTES_PER_WEIGHT: dict[str, float] = {
    "int8": 2.0,
    "int8_float32": 2.0,
    "float32": 4.8,
    "int16": 2.2,
    "float16": 2.2,
    "bfloat16": 2.2,
    "int8_float16": 1.2,
    "int8_bfloat16": 1.2,
}
#: the share of the machine's memory that the models of the workers on it may take together by default
ALONE_SHARE = 0.5
# CTranslate2's type ids (include/ctranslate2/types.h) and their sizes
_TYPE_BYTES = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}
_TYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_BINARY_VERSION = 6  # the model.bin layout this reader knows (CTranslate2 3.x and 4.x write it)


def weight_count(model_bin: Path) -> tuple[int, str]:
    """The number of weights in a CTranslate2 ``model.bin`` and the type most of them are stored in, read
    from its header (a few hundred small reads and seeks). A file this reader does not know counts as
    float16: its size over two."""
    try:
        with model_bin.open("rb") as f:
            return _read_header(f)
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        log.debug("%s: cannot read its header (%s); counting it as float16", model_bin, exc)
    try:
        return model_bin.stat().st_size // 2, "float16"
    except OSError:
        return 0, "float16"


def _read_header(f: BinaryIO) -> tuple[int, str]:
    def number(fmt: str) -> int:
        value: int = struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
        return value

    def skip_string() -> None:
        f.seek(number("<H"), 1)

    if number("<I") != _BINARY_VERSION:
        raise ValueError("not a model.bin of binary version 6")
    skip_string()  # the spec's name
    number("<I")  # its revision
    weights, by_type = 0, dict.fromkeys(_TYPE_BYTES, 0)
    for _ in range(number("<I")):
        skip_string()
        f.seek(4 * number("<B"), 1)  # the dimensions
        type_id, size = number("<B"), number("<I")
        if type_id not in _TYPE_BYTES:
            raise ValueError(f"unknown type id {type_id}")
        weights += size // _TYPE_BYTES[type_id]
        by_type[type_id] += size
        f.seek(size, 1)
    return weights, _TYPE_NAMES[max(by_type, key=lambda type_id: by_type[type_id])]


def estimate_model_bytes(model_dir: str | Path, compute_type: str) -> int:
    """Resident bytes the model in ``model_dir`` takes once loaded with ``compute_type`` (``default``:
    the type its weights are stored in)."""
    weights, stored = weight_count(Path(model_dir) / "model.bin")
    if compute_type == "default":
        compute_type = stored
    per_weight = BYTES_PER_WEIGHT.get(compute_type, BYTES_PER_WEIGHT["float32"])
    return int(weights * per_weight)


def process_rss() -> int:
    """This process's resident memory, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def release_memory() -> None:
    """Collect what was let go of, and give the freed heap back to the system (glibc keeps freed memory
    for the process otherwise: a model's weights are thousands of allocations below its mmap threshold)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def machine_memory() -> int:
    """The machine's memory in bytes, or its container's (cgroup) limit when that is lower."""
    import psutil

    total = int(psutil.virtual_memory().total)
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def auto_budget_bytes(workers: int = 1, memory: int | None = None) -> int:
    """``CESAR_WORKER_MODEL_MEMORY_MB=0``: half the machine's memory, shared by ``workers`` workers."""
    memory = machine_memory() if memory is None else memory
    return max(MIB, int(memory * ALONE_SHARE) // max(1, workers))

"""Whether to decode with faster-whisper's batched pipeline, and how many 30 s windows at once.

The batched pipeline cuts the audio at the pauses voice activity detection finds, into windows of
up to 30 s, and decodes several windows in one pass. It needs VAD to cut, and it pays when there is
more than one window to batch (or, on a GPU, always: the GPU is idle between sequential windows).

``batch_size`` as the user gives it (``--batch-size``, ``CESAR_BATCH_SIZE``):

- ``1``: never batch (faster-whisper's sequential decoding, which conditions each window on the last);
- ``N > 1``: batch ``N`` windows whenever VAD is on, whatever the file (an explicit number wins);
- ``0`` (auto), by device and memory:

  - CUDA: :data:`CUDA_BATCH` windows, for every file (the size faster-whisper suggests for GPUs;
    not measured here: no GPU was at hand);
  - CPU: :data:`CPU_BATCH` windows for every file. Measured on a 2-core machine with tiny.en int8
    (bench/batched_sweep.py; CPU seconds, which other processes' load disturbs less than wall time):
    batched took 0.75-0.85 of the sequential time on the 70 s story and 0.70-0.73 on the story told
    four times (279 s), where its WER was also lower (0.10 against 0.17: sequential decoding drifts on
    long files). A file shorter than one window takes the same time either way, but batched decoding
    gives the same text under every CPU kernel set CTranslate2 may pick (``CT2_FORCE_CPU_ISA``), where
    sequential decoding, each window prompted with the last one's text, read "Hello." four times in a
    telephone call under one and skipped a story's chapter under another (see BENCHMARKS.md). 4, 8
    and 16 windows ran equally fast on CPU (1 and 2 threads), so CPU takes the smallest: half the
    memory, and progress and cancellation twice as often;
  - then halved until ``batch x per-window memory`` fits in :data:`MEMORY_SHARE` of the free memory
    of the device (RAM on CPU; on CUDA the GPU's free memory, read once per loaded model, before
    CTranslate2's own cache holds some of it). Per-window memory is estimated from the size of
    the model's files (:func:`window_bytes`). Halving down to 1 means sequential.

Without VAD every file is decoded sequentially. Batched segments are whole windows: the engine
times their words and cuts them into sentences (:mod:`cesar_common.transcription.sentences`).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cesar_common.transcription.loading import LoadedModel

__all__ = [
    "CPU_BATCH",
    "CUDA_BATCH",
    "auto_batch_size",
    "choose_batch_size",
    "fit_to_memory",
    "free_gpu_memory",
    "free_memory",
    "shutil",
    "subprocess",
    "window_bytes",
]

SEQUENTIAL = 1
CUDA_BATCH = 16
CPU_BATCH = 4
MEMORY_SHARE = 0.5
_MIB = 1024 * 1024
# a window's encoder activations, attention and beam caches; tiny.en (75 MB) needs far less than this
_MIN_WINDOW_BYTES = 64 * _MIB
# faster-whisper's figures (large-v2 fp16, ~3 GB of weights: ~1.5 GB more GPU memory with 16 windows
# than sequential) are ~1/30 of the weights per window; an eighth leaves a wide margin
_WINDOW_SHARE_OF_WEIGHTS = 8


def choose_batch_size(
    requested: int,
    *,
    device: str,
    vad: bool,
    model_bytes: int,
    free_bytes: int | None,
) -> int:
    """The batch size to decode with: 1 means sequential. ``free_bytes`` None: memory unknown."""
    if not vad:
        return SEQUENTIAL
    if requested > 0:
        return requested
    return auto_batch_size(device=device, model_bytes=model_bytes, free_bytes=free_bytes)


def auto_batch_size(*, device: str, model_bytes: int, free_bytes: int | None) -> int:
    """Batch size 0's rule (see the module's docstring), VAD assumed on."""
    wanted = CUDA_BATCH if device == "cuda" else CPU_BATCH
    return fit_to_memory(wanted, window_bytes(model_bytes), free_bytes)


def window_bytes(model_bytes: int) -> int:
    """Estimated memory one more window in a batch needs, for a model whose files weigh ``model_bytes``."""
    return max(_MIN_WINDOW_BYTES, model_bytes // _WINDOW_SHARE_OF_WEIGHTS)


def fit_to_memory(batch: int, per_window: int, free_bytes: int | None) -> int:
    """``batch`` halved until its windows fit in :data:`MEMORY_SHARE` of ``free_bytes`` (None: as is)."""
    if free_bytes is None:
        return batch
    budget = free_bytes * MEMORY_SHARE
    while batch > SEQUENTIAL and batch * per_window > budget:
        batch //= 2
    return max(batch, SEQUENTIAL)


def free_memory(model: LoadedModel) -> int | None:
    """Free memory on the model's device, in bytes; None when it cannot be read.

    On CUDA it is read once per loaded model and kept: after the first batch, CTranslate2's caching
    allocator holds memory that would otherwise read as taken, and shrink every later batch.
    """
    if model.device != "cuda":
        return free_ram()
    if model.gpu_free_bytes is None:
        model.gpu_free_bytes = free_gpu_memory()
    return model.gpu_free_bytes or None


def free_ram() -> int | None:
    import psutil

    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):
        return None


def free_gpu_memory() -> int:
    """The least free memory among the GPUs nvidia-smi sees, in bytes; 0 when unknown.

    nvidia-smi lists every GPU whatever CUDA_VISIBLE_DEVICES says, so the least free one stands for
    the one this process uses: cautious when several GPUs are shared unevenly.
    """
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return 0
    try:
        done = subprocess.run(
            [binary, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        values = [int(line.strip()) for line in done.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0
    return min(values) * _MIB if values else 0

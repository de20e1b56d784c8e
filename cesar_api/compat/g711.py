"""G.711 (ITU-T): μ-law and A-law bytes to PCM16, for ``/v1/realtime``'s ``audio/pcmu`` and ``audio/pcma``.

A table of 256 samples each, built once from the standard's expansion rules; decoding is an index into it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["decode"]


def decode(data: bytes, *, alaw: bool) -> bytes:
    """``data`` (8-bit G.711 codes) as signed 16-bit little-endian PCM at the same rate."""
    import numpy as np

    return bytes(_table(alaw)[np.frombuffer(data, dtype=np.uint8)].tobytes())


@cache
def _table(alaw: bool) -> np.ndarray:
    import numpy as np

    return np.array([_alaw(code) if alaw else _ulaw(code) for code in range(256)], dtype="<i2")


def _ulaw(code: int) -> int:
    code = ~code & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if code & 0x80 else magnitude


def _alaw(code: int) -> int:
    code ^= 0x55
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude

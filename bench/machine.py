"""What the benches print of the machine they ran on: its CPU model, core count and load (BENCHMARKS.md
records it beside each figure)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine_line"]


def machine_line() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"

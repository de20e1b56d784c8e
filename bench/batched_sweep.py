"""Sequential against batched decoding: speed (x real time) and word error rate, per file and thread count.

For each thread count the bundled tiny.en loads once (not timed); then every mode (sequential, batched
with 4, 8 and 16 windows, and `auto`, what Cesar picks by itself) transcribes each file through
Cesar's engine with the default decoding options (beam 5, VAD on), the modes taking turns run after
run so that a change in the machine's load hits all of them alike. Prints, per file, thread count and
mode: the median wall time (and its range), x real time (audio seconds / median wall seconds), the
median CPU seconds (less sensitive to other processes than wall time) and the WER against the
reference text in tests/fixtures/audio/README.md (see cesar_common.transcription.wer).

`--repeat-long N` adds a file of speech_en_long told N times over (N x 70 s, written to a temporary
WAV file): enough windows to tell batch sizes 4, 8 and 16 apart, which the 70 s file (3 windows)
cannot.

    .venv/bin/python bench/batched_sweep.py [--runs 5] [--threads 1 2] [--repeat-long 4]
                                            [--markdown /tmp/bench_batched.md]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from wer import reference_from_readme, word_error_rate

from cesar_common.transcription.loading import LoadedModel, load_model
from cesar_common.transcription.whisper import SAMPLE_RATE, DecodeOptions, decode, transcribe

AUDIO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
FILES = ("speech_en_long.flac", "speech_en.wav")
MODES = {"sequential": 1, "batched 4": 4, "batched 8": 8, "batched 16": 16, "auto": 0}


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wer: float = 0.0
    duration: float = 0.0
    chosen: str = ""  # the mode that ran (for `auto`)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def reference_for(path: Path) -> str:
    readme = (AUDIO / "README.md").read_text(encoding="utf-8")
    stem, _, times = path.stem.partition("_x")
    return " ".join([reference_from_readme(readme, stem)] * int(times or 1))


def repeated_long(times: int, folder: Path) -> Path:
    """speech_en_long told ``times`` times over, as a 16 kHz mono WAV file."""
    samples = decode(AUDIO / "speech_en_long.flac")
    path = folder / f"speech_en_long_x{times}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        pcm = (samples.clip(-1, 1) * 32767).astype("<i2").tobytes()
        out.writeframes(pcm * times)
    return path


def sweep_file(model: LoadedModel, path: Path, runs: int) -> dict[str, Runs]:
    reference = reference_for(path)
    results = {mode: Runs() for mode in MODES}
    for _ in range(runs):
        for mode, batch_size in MODES.items():
            started_cpu, started = cpu_seconds(), time.perf_counter()
            result = transcribe(model, path, DecodeOptions(batch_size=batch_size))
            results[mode].wall.append(time.perf_counter() - started)
            results[mode].cpu.append(cpu_seconds() - started_cpu)
            results[mode].wer = word_error_rate(reference, result.text)
            results[mode].chosen = f"{result.mode} {result.batch_size}".replace("sequential 1", "sequential")
            results[mode].duration = result.duration
    return results


def table(rows: list[tuple[str, int, str, Runs]]) -> str:
    lines = [
        "| file | threads | mode | wall s, median (range) | x real time | CPU s | WER |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, threads, mode, runs in rows:
        wall = statistics.median(runs.wall)
        speed = runs.duration / wall
        label = f"auto ({runs.chosen})" if mode == "auto" else mode
        lines.append(
            f"| {name} | {threads} | {label} | {wall:.2f} ({min(runs.wall):.2f}-{max(runs.wall):.2f}) "
            f"| {speed:.1f}x | {statistics.median(runs.cpu):.2f} | {runs.wer:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each mode per file (default 5)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU threads (default 1 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--repeat-long", type=int, default=0, metavar="N", help="add speech_en_long x N")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows: list[tuple[str, int, str, Runs]] = []
    device = ""
    with tempfile.TemporaryDirectory() as folder:
        paths = [AUDIO / name for name in FILES]
        if args.repeat_long > 1:
            paths.append(repeated_long(args.repeat_long, Path(folder)))
        for threads in args.threads:
            model = load_model("tiny.en", device=args.device, threads=threads)
            device = f"{model.device} {model.compute_type}"
            for path in paths:
                results = sweep_file(model, path, args.runs)
                rows += [(path.name, threads, mode, runs) for mode, runs in results.items()]
            print(table(rows[-len(paths) * len(MODES) :]), flush=True)
    header = (
        f"tiny.en, {device}, {os.cpu_count()} CPUs, {args.runs} runs per mode, beam 5, VAD on; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    report = f"{header}\n\n{table(sorted(rows, key=lambda row: (row[0], row[1])))}\n"
    print(f"\n{report}")
    if args.markdown:
        args.markdown.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()

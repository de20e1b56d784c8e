"""What speaker diarization costs beside transcription, and how well it does.

For each file, in fresh processes: the CPU seconds (all threads) of transcribing it with tiny.en (model
already loaded) and of the diarization step alone (speaker encoder already loaded), per minute of audio,
side by side; the peak RSS of a process doing a worker's work (load tiny.en, transcribe one file) without
and with ``diarize``; and, where the file has a true RTTM beside it and pyannote.metrics is installed (the
dev extras), the diarization error rate (collar 0.25 s, overlap scored) with the count found and given.
Targets: diarization at most 1.5x the transcription's CPU; at most 200 MB more peak RSS.

    .venv/bin/python bench/diarization.py [--runs 3] [files...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
DEFAULT_FILES = [AUDIO / "two_speakers.wav", AUDIO / "three_voices.wav", AUDIO / "speech_en_long.flac"]

# Each child prints one JSON line. CPU time is time.process_time() around the step alone.
CPU_CHILD = """
import json, sys, time
from pathlib import Path
from cesar_common.diarization.local import LocalDiarizer
from cesar_common.transcription.audio import decode_samples
from cesar_common.transcription.loading import load_model
from cesar_common.transcription.whisper import DecodeOptions, transcribe

path = Path(sys.argv[1])
samples = decode_samples(path)
model = load_model("tiny.en", device="cpu", compute_type="int8")
started = time.process_time()
transcribe(model, path, DecodeOptions())
transcription = time.process_time() - started
diarizer = LocalDiarizer()
started = time.process_time()
diarizer.diarize(samples)
diarization = time.process_time() - started
print(json.dumps({"audio": len(samples) / 16000, "transcription": transcription, "diarization": diarization}))
"""

RSS_CHILD = """
import json, resource, sys
from pathlib import Path
from cesar_common.transcription.loading import load_model
from cesar_common.transcription.whisper import DecodeOptions, transcribe

model = load_model("tiny.en", device="cpu", compute_type="int8")
transcribe(model, Path(sys.argv[1]), DecodeOptions(diarize=sys.argv[2] == "on"))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

DER_CHILD = """
import json, sys
from pathlib import Path
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate
from cesar_common.diarization.backend import SpeakerCount
from cesar_common.diarization.local import LocalDiarizer
from cesar_common.transcription.audio import decode_samples

path = Path(sys.argv[1])
samples = decode_samples(path)
reference = Annotation()
for line in path.with_suffix(".rttm").read_text().splitlines():
    fields = line.split()
    reference[Segment(float(fields[3]), float(fields[3]) + float(fields[4]))] = fields[7]
speakers = len(reference.labels())
scored = Timeline([Segment(0, len(samples) / 16000)])
diarizer = LocalDiarizer()
found = {}
for name, count in (("auto", SpeakerCount()), ("given", SpeakerCount(exact=speakers))):
    hypothesis = Annotation()
    for turn in diarizer.diarize(samples, count):
        hypothesis[Segment(turn.start, turn.end)] = turn.speaker
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    found[name] = {"der": metric(reference, hypothesis, uem=scored), "speakers": len(hypothesis.labels())}
print(json.dumps({"true_speakers": speakers, **found}))
"""


def child(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES)
    args = parser.parse_args()
    print("| file | audio | transcription CPU s/audio min | diarization CPU s/audio min | ratio |")
    print("|---|---|---|---|---|")
    for path in args.files:
        runs = [child(CPU_CHILD, str(path)) for _ in range(args.runs)]
        minutes = runs[0]["audio"] / 60
        transcription = statistics.median(run["transcription"] for run in runs) / minutes
        diarization = statistics.median(run["diarization"] for run in runs) / minutes
        print(
            f"| {path.name} | {runs[0]['audio']:.1f} s | {transcription:.2f} | {diarization:.2f} | "
            f"{diarization / transcription:.2f}x |"
        )
    print()
    print("| file | peak RSS without diarize | with | difference |")
    print("|---|---|---|---|")
    for path in args.files:
        off = statistics.median(child(RSS_CHILD, str(path), "off")["peak_rss_mb"] for _ in range(args.runs))
        on = statistics.median(child(RSS_CHILD, str(path), "on")["peak_rss_mb"] for _ in range(args.runs))
        print(f"| {path.name} | {off:.0f} MB | {on:.0f} MB | {on - off:+.0f} MB |")
    print()
    print("| file | true speakers | DER, count found (speakers) | DER, count given |")
    print("|---|---|---|---|")
    for path in args.files:
        if not path.with_suffix(".rttm").exists():
            continue
        try:
            scores = child(DER_CHILD, str(path))
        except subprocess.CalledProcessError as exc:
            print(f"(no DER: {exc.stderr.strip().splitlines()[-1]})")
            break
        auto, given = scores["auto"], scores["given"]
        print(
            f"| {path.name} | {scores['true_speakers']} | {auto['der']:.1%} ({auto['speakers']}) | "
            f"{given['der']:.1%} |"
        )


if __name__ == "__main__":
    main()

"""The same transcript on every CPU: decoding under each kernel set CTranslate2 may pick.

CTranslate2 chooses its CPU kernels by instruction set (``CT2_FORCE_CPU_ISA`` forces one), and their
results differ in the last bits: enough, with sequential decoding prompted by the previous window's text,
to read a story's chapter twice on one CPU and not on another. Each kernel set this CPU supports runs in a
process of its own: the long story sequential (under the CPU's own kernels twice: the two runs must agree, as
they did not while the temperature fallback sampled; whether decoding samples does not depend on the
kernels) and batched (once: the batched pipeline never samples), and the two-speaker
telephone call with the defaults. WER at most 0.20 everywhere; the call must not repeat a line
more often than its reference transcript (STM) says it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from wer import normalise, reference_from_readme, word_error_rate

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
MAX_WER = 0.20
#: CT2_FORCE_CPU_ISA values and the CPU flags (``/proc/cpuinfo``) CTranslate2 needs for each
KERNEL_SETS = {
    "GENERIC": set(),
    "AVX2": {"avx2", "fma"},
    "AVX512": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"},
}

# runs in a fresh process, its kernel set forced through the environment
PROBE = """
import json, sys
from cesar_common.transcription.loading import load_model
from cesar_common.transcription.whisper import DecodeOptions, transcribe

model = load_model("tiny.en", device="cpu", compute_type="int8", threads=1)
long, call, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = {
    mode: [transcribe(model, long, DecodeOptions(batch_size=size)).text for _ in range(runs)]
    for mode, size, runs in (("sequential", 1, repeats), ("batched", 0, 1))
}
result = transcribe(model, call, DecodeOptions())
texts["call"] = [" ".join(segment.text for segment in result.segments), result.mode]
print(json.dumps(texts))
"""


def cpu_flags() -> set[str]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", info, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


SUPPORTED = [name for name, needs in KERNEL_SETS.items() if needs <= cpu_flags()]


@pytest.fixture(scope="module")
def story() -> str:
    return reference_from_readme((AUDIO / "README.md").read_text(encoding="utf-8"), "speech_en_long")


@pytest.fixture(scope="module")
def call_lines() -> list[str]:
    """The call's reference phrases, one per STM line."""
    return [
        line.split(maxsplit=5)[5] for line in (AUDIO / "two_speakers.stm").read_text().splitlines() if line
    ]


def sentences(text: str) -> list[str]:
    return [normalise(part) for part in re.split(r"(?<=[.?!])\s+", text.strip()) if normalise(part)]


def repeated_lines(text: str, reference: list[str]) -> list[str]:
    """Sentences of ``text`` said more often than ``reference`` has sentences that contain them (a short
    reply heard without its "Oh," still counts once); one not in it: more than once."""
    said = Counter(sentences(text))
    spoken = [f" {sentence} " for line in reference for sentence in sentences(line)]
    allowed = {line: sum(f" {line} " in sentence for sentence in spoken) for line in said}
    return [f"{line!r} x{count}" for line, count in said.items() if count > max(1, allowed[line])]


def test_repeated_lines_are_found() -> None:
    reference = ["Hello?", "Hello?", "Oh, hello.", "I'm in New Jersey now though."]
    assert repeated_lines("Hello. Hello? Oh, hello. I'm in New Jersey now though.", reference) == []
    assert repeated_lines("Hello. Hello. Hello. Hello.", reference) == ["'hello' x4"]
    assert repeated_lines("Hello. Hello. Hello.", reference) == []  # "Oh, hello." heard as "Hello."
    assert repeated_lines("In New Jersey now. In New Jersey now.", reference) == ["'in new jersey now' x2"]


@pytest.mark.parametrize("kernels", SUPPORTED)
def test_the_same_transcript_under_every_kernel_set(kernels: str, story: str, call_lines: list[str]) -> None:
    env = {**os.environ, "CT2_FORCE_CPU_ISA": kernels}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(AUDIO / "speech_en_long.flac"),
            str(AUDIO / "two_speakers.wav"),
            "2" if kernels == SUPPORTED[-1] else "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    texts = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(set(texts["sequential"])) == 1, f"{kernels} sequential: two runs differ"
    for mode in ("sequential", "batched"):
        first = texts[mode][0]
        wer = word_error_rate(story, first)
        assert wer <= MAX_WER, f"{kernels} {mode}: WER {wer:.3f}: {first}"
    call, mode = texts["call"]
    assert mode == "batched"
    assert repeated_lines(call, call_lines) == [], f"{kernels}: {call}"
    wer = word_error_rate(" ".join(call_lines), call)
    assert wer <= MAX_WER, f"{kernels} call: WER {wer:.3f}: {call}"

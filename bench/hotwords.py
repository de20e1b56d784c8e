"""Issue 29: the ``hotwords`` decoding option on the fixtures tiny.en mishears, with and without it, through
Cesar's engine (``load_model`` and ``transcribe`` with a job's options: beam 5, VAD on, int8 on the CPU), in
both decoding modes: the words that came out, the word error rate against the spoken text, the wall time.

    .venv/bin/python bench/hotwords.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from wer import reference_from_readme, word_error_rate

from cesar_common.job_options import DecodingOptions, TranscribeOptions
from cesar_common.transcription.loading import load_model
from cesar_common.transcription.whisper import DecodeOptions, transcribe

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
README = (AUDIO / "README.md").read_text()
#: fixture -> the hotwords given for it (the words tiny.en gets wrong without them)
CASES = {
    "speech_en.wav": ("brown", "brown fox", "lazy dog"),
    "speech_en_long.flac": ("ledgers", "numbers forgive", "miller, mill, ledgers, sacks"),
}
MODES = {"batched": 0, "sequential": 1}  # batch_size


def main() -> None:
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    model = load_model("tiny.en", device="cpu", compute_type="int8")
    for name, hints in CASES.items():
        reference = reference_from_readme(README, name.split(".")[0])
        for mode, batch_size in MODES.items():
            for hotwords in (None, *hints):
                job = TranscribeOptions(model="tiny.en", decoding_options=DecodingOptions(hotwords=hotwords))
                started = time.perf_counter()
                result = transcribe(model, AUDIO / name, DecodeOptions.for_job(job, batch_size=batch_size))
                wall = time.perf_counter() - started
                wer = word_error_rate(reference, result.text)
                said = f"hotwords={hotwords!r:32} WER {wer:.3f} {wall:5.2f} s"
                print(f"{name} {mode:10} {said}  {result.text[:90]}")


if __name__ == "__main__":
    main()

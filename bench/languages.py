"""Issue 29: every language for real. The multilingual ``base`` (the ``multilingual-model`` extra) on the
multilingual fixtures, and the bundled ``tiny.en`` on English beside it, in one run, through Cesar's engine
(``load_model`` and ``transcribe``, the worker's defaults: beam 5, VAD on; int8 on the CPU):

* **detection**: each fixture with no language given: the language detected and its probability;
* **transcription**: the word error rate against the fixture's spoken text (tests/fixtures/audio/README.md);
* **translation** (``task=translate``): which of the English content words expected for it came out;
* **speed**: each file's wall time, and the model's load time.

    .venv/bin/python bench/languages.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from machine import machine_line
from wer import normalise, reference_from_readme, word_error_rate

from cesar_common.transcription.loading import load_model
from cesar_common.transcription.whisper import DecodeOptions, transcribe

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
README = (AUDIO / "README.md").read_text()
#: fixture -> the English content words a translation should have (any of the alternatives in a tuple)
TRANSLATION_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "speech_de": (("morning",), ("weather",), ("park",)),
    "speech_es": (("travel", "traveling", "travelling"), ("mountains",)),
    "speech_it": (("kitchen", "cuisine", "cooking", "food"), ("wine",)),
    "speech_pl": (("park",),),
    "speech_ro": (("park",),),
}
LANGUAGES = {"speech_de": "de", "speech_es": "es", "speech_it": "it", "speech_pl": "pl", "speech_ro": "ro"}


def main() -> int:
    print(f"machine: {machine_line()}")
    started = time.monotonic()
    base = load_model("base", device="cpu", compute_type="int8")
    print(f"base loaded in {time.monotonic() - started:.2f} s")
    rows = []
    ok = True
    for name, language in LANGUAGES.items():
        path = AUDIO / f"{name}.flac"
        t0 = time.monotonic()
        heard = transcribe(base, path, DecodeOptions())
        seconds = time.monotonic() - t0
        translated = transcribe(base, path, DecodeOptions(task="translate"))
        words = set(normalise(translated.text).split())
        found = [any(word in words for word in choices) for choices in TRANSLATION_WORDS[name]]
        error = word_error_rate(reference_from_readme(README, name), heard.text)
        ok = ok and heard.language == language
        rows.append(
            (
                name,
                language,
                heard.language,
                heard.language_probability,
                error,
                found,
                seconds,
                heard.duration,
                heard.text,
                translated.text,
            )
        )
    print(
        f"\n{'fixture':<12}{'spoken':<8}{'detected':<10}{'prob.':<8}{'WER':<8}{'translation words':<20}"
        f"{'wall':<8}audio"
    )
    for name, spoken, detected, prob, error, found, seconds, duration, _, _ in rows:
        print(
            f"{name:<12}{spoken:<8}{detected:<10}{prob:<8.3f}{error:<8.3f}{sum(found)}/{len(found):<18}"
            f"{seconds:<8.2f}{duration:.1f} s"
        )
    for name, *_, text, translation in rows:
        print(f"  {name}: {text.strip()}\n  {'':<{len(name)}}  -> {translation.strip()}")
    russian = transcribe(base, AUDIO / "speech_ru.flac", DecodeOptions(language="ru"))
    wer_ru = word_error_rate(reference_from_readme(README, "speech_ru"), russian.text)
    print(f"speech_ru (language ru given): WER {wer_ru:.3f}: {russian.text.strip()}")
    mixed = transcribe(base, AUDIO / "speech_de_es.flac", DecodeOptions())
    print(
        f"speech_de_es (German, then Spanish): detected {mixed.language} "
        f"({mixed.language_probability:.3f}): {mixed.text.strip()}"
    )

    tiny = load_model("tiny.en", device="cpu", compute_type="int8")
    t0 = time.monotonic()
    english = transcribe(tiny, AUDIO / "speech_en.wav", DecodeOptions())
    seconds = time.monotonic() - t0
    t0 = time.monotonic()
    english_base = transcribe(base, AUDIO / "speech_en.wav", DecodeOptions())
    seconds_base = time.monotonic() - t0
    reference = reference_from_readme(README, "speech_en")
    print(
        f"\nspeech_en: tiny.en WER {word_error_rate(reference, english.text):.3f} in {seconds:.2f} s; base "
        f"WER {word_error_rate(reference, english_base.text):.3f} in {seconds_base:.2f} s (detected "
        f"{english_base.language}, {english_base.language_probability:.3f})"
    )
    print(f"machine at the end: {machine_line()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

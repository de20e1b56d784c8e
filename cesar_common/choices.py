"""Every list of choices Cesar offers, declared once.

The settings, the command line, the API's schemas and validation, the output writers and the engine all
derive their choices from here. Importing it costs nothing (``typing`` only), so the command line can build
its options from it without loading pydantic, Litestar or faster-whisper.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "AUDIO_PLACES",
    "BUNDLED_MODEL",
    "COMPUTE_TYPES",
    "DEVICES",
    "LOG_LEVELS",
    "OPENAI_GRANULARITIES",
    "OPENAI_GRANULARITY_FIELD",
    "OPENAI_RESPONSE_FORMATS",
    "TASKS",
    "TRANSCRIPT_FORMATS",
    "WHISPER_LANGUAGES",
    "WHISPER_LANGUAGE_NAMES",
    "AudioPlace",
    "ComputeType",
    "Device",
    "LogLevel",
    "Task",
    "TranscriptFormat",
]

#: where stored audio can be (`cesar db move --to`): an object store (CESAR_BLOB_URL), or the job database
AudioPlace = Literal["objects", "database"]
Device = Literal["auto", "cpu", "cuda"]
ComputeType = Literal[
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16",
    "bfloat16", "float32",
]  # fmt: skip
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
Task = Literal["transcribe", "translate"]
TranscriptFormat = Literal["txt", "srt", "vtt", "json", "tsv", "rttm"]

AUDIO_PLACES: tuple[AudioPlace, ...] = get_args(AudioPlace)
DEVICES: tuple[Device, ...] = get_args(Device)
COMPUTE_TYPES: tuple[ComputeType, ...] = get_args(ComputeType)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
TASKS: tuple[Task, ...] = get_args(Task)
TRANSCRIPT_FORMATS: tuple[TranscriptFormat, ...] = get_args(TranscriptFormat)

#: OpenAI's transcription API (``/v1/audio/...``): its response formats and timestamp granularities
OPENAI_RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
OPENAI_GRANULARITIES = ("word", "segment")
#: OpenAI's clients repeat this form field, once per granularity
OPENAI_GRANULARITY_FIELD = "timestamp_granularities[]"

#: The model that ships with Cesar (the ``bundled-model`` extra) and is the default.
BUNDLED_MODEL = "tiny.en"

#: Whisper's languages, code to the English name its tokenizer gives (OpenAI's ``verbose_json`` says
#: "english"): the codes are faster_whisper_adapter.LANGUAGE_CODES, which the API may not import (a unit
#: test keeps the two equal)
WHISPER_LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian",
    "kn": "kannada", "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque",
    "is": "icelandic", "hy": "armenian", "ne": "nepali", "mn": "mongolian", "bs": "bosnian",
    "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi",
    "si": "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese", "ht": "haitian creole",
    "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese", "sa": "sanskrit",
    "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy",
    "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa", "ba": "bashkir",
    "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip
WHISPER_LANGUAGES: frozenset[str] = frozenset(WHISPER_LANGUAGE_NAMES)

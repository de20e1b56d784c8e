"""Every list of choices Cesar offers, declared once.

The settings, the command line, the API's schemas and validation, the output writers and the engine all
derive their choices from here. Importing it costs nothing (``typing`` only), so the command line can build
its options from it without loading pydantic, Litestar or faster-whisper.
"""

from __future__ import annotations

from typing import Literal, get_args

Device = Literal["auto", "cpu", "cuda"]
ComputeType = Literal[
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16",
    "bfloat16", "float32",
]  # fmt: skip
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
Task = Literal["transcribe", "translate"]
TranscriptFormat = Literal["txt", "srt", "vtt", "json", "tsv"]

DEVICES: tuple[Device, ...] = get_args(Device)
COMPUTE_TYPES: tuple[ComputeType, ...] = get_args(ComputeType)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
TASKS: tuple[Task, ...] = get_args(Task)
TRANSCRIPT_FORMATS: tuple[TranscriptFormat, ...] = get_args(TranscriptFormat)

#: The model that ships with Cesar (the ``bundled-model`` extra) and is the default.
BUNDLED_MODEL = "tiny.en"

_LANGUAGE_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht "
    "hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl "
    "ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue"
)
#: Whisper's language codes: faster_whisper.tokenizer._LANGUAGE_CODES, which the API may not import
#: (a unit test keeps the two equal).
WHISPER_LANGUAGES: frozenset[str] = frozenset(_LANGUAGE_CODES.split())

"""The options a transcription job carries, declared once.

:class:`TranscribeOptions` is what a job asks of the engine, and each field's metadata (:class:`OptionDoc`)
documents it. Everything else derives from this one declaration: the job columns the store writes and reads
(same names), the idempotency fingerprint, the API's request and response schemas, the command line's
options and the engine's decoding options. A new option is a new field here, a column, and the engine's use
of it. Importing this module costs nothing (no pydantic, no Click).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cesar_common.choices import Task
from cesar_common.errors import InvalidInputError

__all__ = [
    "MAX_SPEAKERS",
    "OPTION_NAMES",
    "OptionSpec",
    "TranscribeOptions",
    "check_speakers",
    "cli_flag",
    "option_specs",
    "options_dict",
    "options_from",
]


@dataclass(frozen=True, slots=True)
class OptionDoc:
    """How an option is documented and checked where it enters (API fields, command-line options)."""

    description: str
    example: object = None
    max_length: int | None = None
    #: a regular expression the API checks the value against where it enters
    pattern: str | None = None
    #: extra command-line flags, e.g. ``("-l",)`` beside ``--language``
    flags: tuple[str, ...] = ()
    #: the smallest and largest number allowed (integer options)
    ge: int | None = None
    le: int | None = None


#: the most speakers a job may ask for
MAX_SPEAKERS = 32


def _doc(description: str, **kwargs: Any) -> dict[str, OptionDoc]:
    return {"doc": OptionDoc(description, **kwargs)}


@dataclass(frozen=True, slots=True)
class TranscribeOptions:
    """What a job asks of the engine (stored in the job's columns of the same names)."""

    model: str = field(
        metadata=_doc(
            "Whisper model; must be in the server's allowlist (`CESAR_MODELS`). Default: the server's "
            "default model.",
            example="tiny.en",
            max_length=255,
        )
    )
    language: str | None = field(
        default=None,
        metadata=_doc(
            "Spoken language as an ISO 639 code (`en`, `de`, `yue`); empty or `auto` detects it.",
            example="en",
            max_length=16,
            pattern=r"^([A-Za-z]{2,3}|auto)?$",
            flags=("-l",),
        ),
    )
    task: Task = field(default="transcribe", metadata=_doc("`transcribe`, or `translate` into English."))
    word_timestamps: bool = field(
        default=False, metadata=_doc("Also time every word (in the `json` transcript).")
    )
    vad: bool = field(
        default=True,
        metadata=_doc(
            "Skip silence with voice activity detection (recommended: without it, silence and clips cut "
            "short may turn into words)."
        ),
    )
    initial_prompt: str | None = field(
        default=None,
        metadata=_doc(
            "Text that primes the model: names, spellings, style.",
            example="Cesar, Litestar, faster-whisper",
            max_length=2000,
        ),
    )
    diarize: bool = field(
        default=False,
        metadata=_doc(
            "Tell who spoke when: every segment (and word) gets a `speaker` (`SPEAKER_00`, ... in order of "
            "appearance), segments split where the speaker changes; the `rttm` transcript gives the turns."
        ),
    )
    num_speakers: int | None = field(
        default=None,
        metadata=_doc(
            "With `diarize`: the number of speakers, when known (default: found automatically).",
            example=2,
            ge=1,
            le=MAX_SPEAKERS,
        ),
    )
    min_speakers: int | None = field(
        default=None,
        metadata=_doc("With `diarize`: at least this many speakers.", example=1, ge=1, le=MAX_SPEAKERS),
    )
    max_speakers: int | None = field(
        default=None,
        metadata=_doc("With `diarize`: at most this many speakers.", example=4, ge=1, le=MAX_SPEAKERS),
    )


#: the options' names, in declaration order (the job columns that hold them have the same names)
OPTION_NAMES: tuple[str, ...] = tuple(item.name for item in dataclasses.fields(TranscribeOptions))


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option: its name, type (resolved), default and documentation."""

    name: str
    annotation: Any
    default: Any
    doc: OptionDoc


@cache
def option_specs() -> tuple[OptionSpec, ...]:
    """Every option of :class:`TranscribeOptions`, with its resolved type."""
    hints = typing.get_type_hints(TranscribeOptions)
    return tuple(
        OptionSpec(
            name=item.name,
            annotation=hints[item.name],
            default=None if item.default is dataclasses.MISSING else item.default,
            doc=item.metadata["doc"],
        )
        for item in dataclasses.fields(TranscribeOptions)
    )


def options_from(values: Mapping[str, Any], **overrides: Any) -> TranscribeOptions:
    """The options among ``values`` (other keys are ignored), with ``overrides`` on top."""
    chosen = {name: values[name] for name in OPTION_NAMES if name in values}
    return TranscribeOptions(**{**chosen, **overrides})


def cli_flag(name: str) -> str:
    """The command-line flag of the option ``name`` (``--min-speakers``)."""
    return "--" + name.replace("_", "-")


def check_speakers(options: TranscribeOptions, *, flags: bool = False) -> TranscribeOptions:
    """``options`` once its speaker counts agree with each other: an InvalidInputError naming both values
    where they do not, for every door to refuse alike (the diarizer would quietly pick one of them). Named
    as fields (``min_speakers=5``), or as command-line flags (``--min-speakers 5``) with ``flags``."""

    def named(name: str) -> str:
        value = getattr(options, name)
        return f"{cli_flag(name)} {value}" if flags else f"{name}={value}"

    exact, least, most = options.num_speakers, options.min_speakers, options.max_speakers
    conflict = None
    if least is not None and most is not None and least > most:
        conflict = f"{named('min_speakers')} is more than {named('max_speakers')}"
    elif exact is not None and least is not None and exact < least:
        conflict = f"{named('num_speakers')} is fewer than {named('min_speakers')}"
    elif exact is not None and most is not None and exact > most:
        conflict = f"{named('num_speakers')} is more than {named('max_speakers')}"
    if conflict is not None:
        raise InvalidInputError(
            f"speaker counts that contradict each other: {conflict}",
            extra={"num_speakers": exact, "min_speakers": least, "max_speakers": most},
        )
    return options


def options_dict(options: TranscribeOptions) -> dict[str, Any]:
    """The options as a plain dict, by name (what the job's columns hold)."""
    return {name: getattr(options, name) for name in OPTION_NAMES}

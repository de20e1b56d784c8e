"""The options a transcription job carries, declared once.

:class:`TranscribeOptions` is what a job asks of the engine, and each field's metadata (:class:`OptionDoc`)
documents it. Everything else derives from this one declaration: the job columns the store writes and reads
(same names), the idempotency fingerprint, the API's request and response schemas, the command line's
options, the manual's table of decoding options and the engine's decoding options. A new option is a new
field here, a column, and the engine's use of it; a new decoding option (:class:`DecodingOptions`: how
Whisper decodes, all kept in the one JSON column ``decoding_options``) needs no column. Importing this module
costs nothing (no pydantic, no Click).

Every door takes the options by the same names (API fields and query parameters; the command line's flags
are the names with dashes). Decoding options may come as text (a form field, a query parameter, a flag):
:func:`parse_option` reads and checks each, and :func:`check_options` checks the options together, for every
door to refuse alike.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cesar_common.choices import Task
from cesar_common.errors import InvalidInputError

__all__ = [
    "DECODING_NAMES",
    "MAX_SPEAKERS",
    "OPTION_NAMES",
    "DecodingOptions",
    "OptionSpec",
    "TranscribeOptions",
    "check_options",
    "check_speakers",
    "cli_flag",
    "decoding_json",
    "decoding_table",
    "default_text",
    "option_columns",
    "option_specs",
    "option_text",
    "options_dict",
    "options_from",
    "options_from_columns",
    "parse_names",
    "parse_option",
    "parse_options",
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
    #: the smallest and largest number allowed (number options; each number of a list option)
    ge: float | None = None
    le: float | None = None
    #: list options: how many numbers they take at least and at most
    min_items: int = 0
    max_items: int | None = None
    #: the default as the manual's table says it, where the value alone would not say it
    default_text: str | None = None


#: the most speakers a job may ask for
MAX_SPEAKERS = 32


def _doc(description: str, **kwargs: Any) -> dict[str, OptionDoc]:
    return {"doc": OptionDoc(description, **kwargs)}


#: the most numbers a list option takes (``temperature``, ``suppress_tokens``, ``clip_timestamps``)
MAX_LIST_ITEMS = 100
#: Whisper's largest token id (large-v3's vocabulary: 51866 tokens)
MAX_TOKEN_ID = 51865


@dataclass(frozen=True, slots=True)
class DecodingOptions:
    """How Whisper decodes: the faster-whisper options a user reaches for. Their defaults are how Cesar
    decodes without them (deterministically: temperature 0, no fallback, no conditioning on the previous
    window). A job stores those that differ from their defaults in one JSON column, ``decoding_options``
    (migration 0009 says why); clients see them among the job's options, by name."""

    hotwords: str | None = field(
        default=None,
        metadata=_doc(
            "Words or names the model should expect, as a hint before every window (unlike "
            "`initial_prompt`, they do not read as text said before): `Cesar, Litestar`.",
            example="Cesar, Litestar",
            max_length=1000,
        ),
    )
    temperature: tuple[float, ...] = field(
        default=(0.0,),
        metadata=_doc(
            "Sampling temperature, 0 to 1. `0` decodes deterministically (beam search). A list such as "
            "`0,0.2,0.4,0.6,0.8,1.0` is Whisper's fallback: a window whose text fails "
            "`compression_ratio_threshold` or `log_prob_threshold` is decoded again at the next "
            "temperature, sampled (so not the same text run after run). Anything but `0` decodes "
            "sequentially.",
            example=[0.0, 0.2, 0.4],
            ge=0,
            le=1,
            min_items=1,
            max_items=10,
        ),
    )
    condition_on_previous_text: bool = field(
        default=False,
        metadata=_doc(
            "Prompt each 30 s window with the text decoded before it (Whisper's own default, off in "
            "Cesar: it can make the model repeat earlier text instead of hearing the audio). Decodes "
            "sequentially."
        ),
    )
    no_speech_threshold: float = field(
        default=0.6,
        metadata=_doc(
            "A window whose no-speech probability is above this, and whose text is unsure (average log "
            "probability under `log_prob_threshold`), is silence: it gives no text.",
            example=0.6,
            ge=0,
            le=1,
        ),
    )
    log_prob_threshold: float = field(
        default=-1.0,
        metadata=_doc(
            "A window whose average log probability per token is under this is unsure: silence if "
            "`no_speech_threshold` says so too, else decoded again at the next `temperature` of a list. "
            "With VAD, less than a second of speech whose text is all unsure gives no text.",
            example=-1.0,
            ge=-10,
            le=0,
        ),
    )
    compression_ratio_threshold: float = field(
        default=2.4,
        metadata=_doc(
            "With a `temperature` list: a window whose text compresses (gzip) more than this is "
            "repetitive, and is decoded again at the next temperature.",
            example=2.4,
            ge=1,
            le=10,
        ),
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata=_doc(
            "Penalty on tokens already generated in a window: above 1, fewer repeats (1: none).",
            example=1.2,
            ge=1,
            le=5,
        ),
    )
    no_repeat_ngram_size: int = field(
        default=0,
        metadata=_doc(
            "Never repeat a sequence of this many tokens within a window (0: off).", example=3, ge=0, le=20
        ),
    )
    suppress_tokens: tuple[int, ...] = field(
        default=(-1,),
        metadata=_doc(
            "Token ids the model may not write, separated by commas: `-1` is Whisper's set of symbols (the "
            "default), an empty list suppresses none.",
            example=[-1, 13],
            ge=-1,
            le=MAX_TOKEN_ID,
            max_items=MAX_LIST_ITEMS,
        ),
    )
    vad_threshold: float = field(
        default=0.5,
        metadata=_doc(
            "With `vad`: how sure Silero VAD must be that a 32 ms frame is speech (higher: less counts as "
            "speech).",
            example=0.5,
            ge=0,
            le=1,
        ),
    )
    vad_min_silence_ms: int | None = field(
        default=None,
        metadata=_doc(
            "With `vad`: the shortest pause, in milliseconds, that ends a stretch of speech "
            "(faster-whisper's default: 2000 in sequential decoding, 160 in batched).",
            example=500,
            ge=0,
            le=10_000,
            default_text="2000 sequential, 160 batched",
        ),
    )
    vad_speech_pad_ms: int = field(
        default=400,
        metadata=_doc(
            "With `vad`: the milliseconds of audio kept on both sides of each stretch of speech.",
            example=400,
            ge=0,
            le=2000,
        ),
    )
    clip_timestamps: tuple[float, ...] = field(
        default=(),
        metadata=_doc(
            "Transcribe only these spans: `start,end,start,end,...` in seconds from the start of the "
            "audio, in order (an odd count: the last span runs to the end). VAD does not apply inside "
            "them. Decodes sequentially.",
            example=[0.0, 3.0],
            ge=0,
            max_items=MAX_LIST_ITEMS,
            default_text="the whole audio",
        ),
    )


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
    name_speakers: bool = field(
        default=True,
        metadata=_doc(
            "With `diarize`: give each voice the voice library knows its person's name instead of its "
            "`SPEAKER_nn` label (off: labels only)."
        ),
    )
    known_speakers: tuple[str, ...] | None = field(
        default=None,
        metadata=_doc(
            "With `diarize`: name only these people of the voice library, separated by commas (default: "
            "anyone in it).",
            example=["Diane", "Sheila"],
            max_items=MAX_SPEAKERS,
        ),
    )
    #: how Whisper decodes (each is an option of its own at every door, by its name)
    decoding_options: DecodingOptions = field(default=DecodingOptions(), metadata={"group": True})


#: the decoding options' names, in declaration order (stored together in the job's ``decoding_options``)
DECODING_NAMES: tuple[str, ...] = tuple(item.name for item in dataclasses.fields(DecodingOptions))
#: the options with a job column of their own (same names)
_COLUMN_NAMES: tuple[str, ...] = tuple(
    item.name for item in dataclasses.fields(TranscribeOptions) if item.name != "decoding_options"
)
#: every option's name, in declaration order: the columns' options, then the decoding options
OPTION_NAMES: tuple[str, ...] = _COLUMN_NAMES + DECODING_NAMES
_DEFAULT_DECODING = DecodingOptions()


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option: its name, type (resolved), default and documentation."""

    name: str
    annotation: Any
    default: Any
    doc: OptionDoc
    #: a decoding option (:class:`DecodingOptions`)
    decoding: bool = False


@cache
def option_specs() -> tuple[OptionSpec, ...]:
    """Every option, the decoding options among them, with its resolved type."""
    specs: list[OptionSpec] = []
    for owner in (TranscribeOptions, DecodingOptions):
        hints = typing.get_type_hints(owner)
        specs.extend(
            OptionSpec(
                name=item.name,
                annotation=hints[item.name],
                default=None if item.default is dataclasses.MISSING else item.default,
                doc=item.metadata["doc"],
                decoding=owner is DecodingOptions,
            )
            for item in dataclasses.fields(owner)
            if "doc" in item.metadata
        )
    return tuple(specs)


@cache
def _specs_by_name() -> dict[str, OptionSpec]:
    return {spec.name: spec for spec in option_specs()}


def options_from(values: Mapping[str, Any], **overrides: Any) -> TranscribeOptions:
    """The options among ``values`` (other keys are ignored), with ``overrides`` on top. A decoding option
    that is None keeps its default; their values must have been read already (:func:`parse_options`)."""
    chosen = {**{name: values[name] for name in OPTION_NAMES if name in values}, **overrides}
    decoding = {name: chosen.pop(name) for name in DECODING_NAMES if name in chosen}
    given = {name: value for name, value in decoding.items() if value is not None}
    return TranscribeOptions(**chosen, decoding_options=DecodingOptions(**given))


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


#: the decoding options that tune voice activity detection (they need ``vad``)
_VAD_NAMES = ("vad_threshold", "vad_min_silence_ms", "vad_speech_pad_ms")


def check_options(options: TranscribeOptions, *, flags: bool = False) -> TranscribeOptions:
    """``options`` once they agree with each other (:func:`check_speakers`; VAD's options need VAD), else
    an InvalidInputError naming the option as a field, or as a command-line flag with ``flags``."""
    check_speakers(options, flags=flags)
    decoding = options.decoding_options
    if not options.vad:
        tuned = [name for name in _VAD_NAMES if getattr(decoding, name) != getattr(_DEFAULT_DECODING, name)]
        if tuned:
            name = cli_flag(tuned[0]) if flags else tuned[0]
            off = "--no-vad" if flags else "vad=false"
            raise InvalidInputError(
                f"{name} tunes voice activity detection, which is off ({off}): leave it out or turn VAD on",
                extra={"field": tuned[0]},
            )
    return options


def options_dict(options: TranscribeOptions) -> dict[str, Any]:
    """The options as a plain dict, by name, the decoding options among them (what a job's JSON shows)."""
    values = {name: getattr(options, name) for name in _COLUMN_NAMES}
    decoding = options.decoding_options
    return values | {name: getattr(decoding, name) for name in DECODING_NAMES}


# --- the job's columns ---------------------------------------------------------------------------------
def decoding_json(decoding: DecodingOptions) -> dict[str, Any] | None:
    """The decoding options that differ from their defaults, as JSON values (lists for tuples): what the
    ``decoding_options`` column holds; None when every one is at its default."""
    changed = {
        name: list(value) if isinstance(value, tuple) else value
        for name in DECODING_NAMES
        if (value := getattr(decoding, name)) != getattr(_DEFAULT_DECODING, name)
    }
    return changed or None


def option_columns(options: TranscribeOptions) -> dict[str, Any]:
    """The values of a job's option columns: one per option, and the decoding options in one JSON column."""
    values = {name: getattr(options, name) for name in _COLUMN_NAMES}
    if values["known_speakers"] is not None:
        values["known_speakers"] = list(values["known_speakers"])
    return values | {"decoding_options": decoding_json(options.decoding_options)}


def options_from_columns(row: Mapping[str, Any]) -> TranscribeOptions:
    """A job's options from its columns (:func:`option_columns`). A decoding option this version does not
    know (stored by a newer one) is left out."""
    stored = row["decoding_options"] or {}
    decoding: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in stored.items()
        if name in DECODING_NAMES
    }
    columns = {name: row[name] for name in _COLUMN_NAMES}
    if columns["known_speakers"] is not None:
        columns["known_speakers"] = tuple(columns["known_speakers"])
    return TranscribeOptions(**columns, decoding_options=DecodingOptions(**decoding))


# --- reading a decoding option ---------------------------------------------------------------------------
def parse_option(name: str, value: Any, *, label: str | None = None) -> Any:
    """The decoding option ``name``'s value as the engine takes it, from text (a form field, a query
    parameter, a command-line flag) or a JSON value; None stays None (the option's default). A ValueError
    says what is wrong, naming the option ``label`` (default: ``name``; ``""`` where the door names it).
    The one check of every door."""
    spec = _specs_by_name()[name]
    label = name if label is None else label
    if value is None:
        return None
    annotation = spec.annotation
    if typing.get_origin(annotation) is tuple:
        (kind,) = {arg for arg in typing.get_args(annotation) if arg is not Ellipsis}
        return _numbers(spec, value, kind, label)
    if annotation is bool:
        return value  # read by the door (pydantic, Click) as every other flag
    if annotation in (str, str | None):
        if not isinstance(value, str):
            raise ValueError(_said(label, f"must be text, not {value!r}"))
        text = value.strip() or None
        if text is not None and spec.doc.max_length is not None and len(text) > spec.doc.max_length:
            too_long = f"is at most {spec.doc.max_length} characters long, not {len(text)}"
            raise ValueError(_said(label, too_long))
        return text
    kind = int if int in typing.get_args(annotation) or annotation is int else float
    return _number(spec, value, kind, _said(label, f"must be {_kind_range(spec, kind)}, not {value!r}"))


def parse_options(values: Mapping[str, Any], *, flags: bool = False) -> dict[str, Any]:
    """``values`` with each decoding option among them read by :func:`parse_option`; a refused one is an
    InvalidInputError naming it as a field, or as its command-line flag with ``flags``."""
    read = dict(values)
    if read.get("known_speakers") is not None:
        label = cli_flag("known_speakers") if flags else "known_speakers"
        try:
            read["known_speakers"] = parse_names(read["known_speakers"], label=label)
        except ValueError as exc:
            raise InvalidInputError(str(exc), extra={"field": "known_speakers"}) from None
    for name in DECODING_NAMES:
        if read.get(name) is not None:
            try:
                read[name] = parse_option(name, read[name], label=cli_flag(name) if flags else name)
            except ValueError as exc:
                raise InvalidInputError(str(exc), extra={"field": name}) from None
    return read


def parse_names(value: Any, *, label: str = "known_speakers") -> tuple[str, ...] | None:
    """People's names from text separated by commas, or a JSON list (None: none given); each trimmed,
    empty ones dropped, repeats once. A ValueError says what is wrong."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ValueError(_said(label, "takes names separated by commas, or a list of names"))
    names = tuple(dict.fromkeys(" ".join(item.split()) for item in items if item.strip()))
    most = _specs_by_name()["known_speakers"].doc.max_items
    if most is not None and len(names) > most:
        raise ValueError(_said(label, f"takes at most {most} names, not {len(names)}"))
    if not names:
        return None
    return names


def _said(label: str, text: str) -> str:
    """``text`` about the option ``label`` (none: the door names it)."""
    return f"{label} {text}" if label else text


def _kind_range(spec: OptionSpec, kind: type) -> str:
    noun = "a whole number" if kind is int else "a number"
    return f"{noun} {_range(spec.doc)}"


def _range(doc: OptionDoc) -> str:
    if doc.le is None:
        return f"of at least {doc.ge:g}"
    return f"from {doc.ge:g} to {doc.le:g}"


def _number(spec: OptionSpec, value: Any, kind: type, refusal: str) -> float | int:
    """One number of the option ``spec`` (``kind``: int or float) within its range, else ValueError."""
    if isinstance(value, bool):
        raise ValueError(refusal)
    try:
        number = kind(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(refusal) from None
    if kind is int and isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int | float) or (kind is int and not isinstance(number, int)):
        raise ValueError(refusal)
    low, high = spec.doc.ge, spec.doc.le
    if not math.isfinite(number) or (low is not None and number < low):
        raise ValueError(refusal)
    if high is not None and number > high:
        raise ValueError(refusal)
    return kind(number)  # type: ignore[no-any-return]


def _numbers(spec: OptionSpec, value: Any, kind: type, label: str) -> tuple[float | int, ...]:
    """A list option: numbers separated by commas (or a JSON list, or one number), each within range."""
    if isinstance(value, str):
        items: list[Any] = [item for item in value.replace(" ", "").split(",")] if value.strip() else []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    most = spec.doc.max_items
    if len(items) < spec.doc.min_items or (most is not None and len(items) > most):
        count = f"{spec.doc.min_items} to {most}" if spec.doc.min_items else f"at most {most}"
        raise ValueError(_said(label, f"takes {count} numbers separated by commas, not {len(items)}"))
    numbers = tuple(
        _number(spec, item, kind, _said(label and f"{label}:", f"{item!r} is not {_kind_range(spec, kind)}"))
        for item in items
    )
    if spec.name == "clip_timestamps":
        _check_spans(numbers, label)
    return numbers


def _check_spans(numbers: tuple[float | int, ...], label: str) -> None:
    """Spans as ``start,end,start,end...``: each ends after it starts, and starts where the one before it
    ended or later."""
    for before, after, index in zip(numbers, numbers[1:], range(1, len(numbers)), strict=False):
        if after < before or (index % 2 == 1 and after == before):
            raise ValueError(
                _said(
                    label,
                    "takes spans as start,end,start,end... in seconds, in order, each ending after it "
                    f"starts: not {before:g} then {after:g}",
                )
            )


def default_text(spec: OptionSpec) -> str:
    """An option's default as ``--help`` says it."""
    return spec.doc.default_text or ("none" if spec.default is None else option_text(spec.default))


def option_text(value: Any) -> str:
    """An option's value as a form field or query parameter says it (``0,0.2``; ``true``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(option_text(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- the manual's table ----------------------------------------------------------------------------------
def decoding_table() -> str:
    """The Markdown table of the decoding options in ``docs/decoding.md`` (``make docs-decoding``)."""
    rows = [
        "| Option | Flag | Meaning | Default | Range |",
        "|---|---|---|---|---|",
    ]
    for spec in option_specs():
        if not spec.decoding:
            continue
        doc = spec.doc
        if spec.annotation is bool:
            allowed = "`true`, `false`"
        elif doc.ge is None:
            allowed = f"text, at most {doc.max_length} characters"
        else:
            allowed = _range(doc).removeprefix("from ").replace("of at least ", "at least ")
            if doc.max_items is not None:
                allowed += f", at most {doc.max_items} numbers"
        default = doc.default_text or ("none" if spec.default is None else f"`{option_text(spec.default)}`")
        meaning = doc.description.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{cli_flag(spec.name)}` | {meaning} | {default} | {allowed} |")
    return "\n".join(rows) + "\n"

"""Corrections of a completed job's transcript: edit operations applied to its segments and speakers.

Pure (no I/O): :func:`parse_edits` reads the edits a client sent (``PATCH /jobs/{id}/transcript``), and
:func:`apply_edits` applies them, in order, to a :class:`Transcript` as the job stores it (segments as
dicts: ``id``, ``start``, ``end``, ``text``, ``speaker``?, ``words``? of ``{start, end, word, probability,
speaker?}``, ``decoded``?; and its ``speakers`` list). The store keeps each result as a revision.

The operations (``op``):

- ``text`` ``{"segment", "text"}``: a segment's new text;
- ``speaker`` ``{"segment", "speaker"}``: the segment (and its words) said by another speaker, known or new;
- ``rename`` ``{"speaker", "to", "remember"?}``: a speaker renamed for the whole transcript (renamed to
  another speaker's name, the two become one); ``remember``: the store also adds the job's voice print of
  that speaker to the voice library under the new name (:attr:`Revised.remember`);
- ``merge`` ``{"segments": [n, n + 1, ...]}``: neighbouring segments made one, said by the first one's
  speaker;
- ``split`` ``{"segment", "word" | "char"}``: a segment cut in two before its word ``word`` (an index into
  its ``words``) or at character ``char`` of its text;
- ``restore`` ``{"revision"}``: the transcript as an earlier revision had it (``"original"`` or 0: the
  machine's), word times included: how an edit is undone.

Segment ids are renumbered from 0 after every edit, and each edit's ids name the segments as the edits
before it in the same request left them.

Word times stay valid: a segment's ``words`` only ever hold words with their times as heard. An edited text
is compared with the words it had (as whitespace-separated tokens, ignoring case and punctuation): a word
kept keeps its times (spelled as now written), a word changed or typed in has no times and is not in
``words``, and the segment says ``"edited": true`` (its ``words`` may no longer spell all its text; its
``decoded`` loses the tokens, which no longer spell it). A segment's ``start`` and ``end`` stay as heard; a
split takes the times at the cut from the words on each side, or estimates them from the text's length
where it has none.

Speakers: ``speakers`` is recomputed from the segments (each name's total time, by name), each entry
keeping what it said beside (``label``, the diarizer's, and the library's ``speaker_id`` and ``distance``)
through renames; a name no segment uses any more is dropped; a new name gets those keys as null.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from cesar_common.errors import InvalidInputError
from cesar_common.text import control_character

__all__ = [
    "MAX_EDITS",
    "MAX_NAME_LENGTH",
    "MAX_TEXT_LENGTH",
    "OPERATIONS",
    "Edit",
    "Merge",
    "Remember",
    "Rename",
    "Restore",
    "Revised",
    "SetSpeaker",
    "SetText",
    "Split",
    "Transcript",
    "apply_edits",
    "edit_json",
    "joined_text",
    "parse_edits",
]

#: the most edits one request may carry
MAX_EDITS = 500
#: the longest text a segment may be given (characters)
MAX_TEXT_LENGTH = 10_000
#: the longest speaker name (the voice library's names are as long at most)
MAX_NAME_LENGTH = 100
OPERATIONS = ("text", "speaker", "rename", "merge", "split", "restore")
#: times computed here are rounded to a millisecond
_DIGITS = 3
_TOKEN = re.compile(r"\S+")


# --- the transcript ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcript as the job stores it: ``segments`` (never changed in place here) and ``speakers`` (null
    for a transcript nobody was named in)."""

    segments: Sequence[dict[str, Any]]
    speakers: list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        return joined_text(self.segments)


def joined_text(segments: Sequence[Mapping[str, Any]]) -> str:
    """The transcript's plain text as the worker writes it: the non-empty segments' texts, spaced."""
    return " ".join(str(segment["text"]) for segment in segments if segment.get("text"))


# --- the edits -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SetText:
    segment: int
    text: str


@dataclass(frozen=True, slots=True)
class SetSpeaker:
    segment: int
    speaker: str


@dataclass(frozen=True, slots=True)
class Rename:
    speaker: str
    to: str
    remember: bool = False


@dataclass(frozen=True, slots=True)
class Merge:
    segments: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Split:
    segment: int
    word: int | None = None
    char: int | None = None


@dataclass(frozen=True, slots=True)
class Restore:
    revision: int


Edit = SetText | SetSpeaker | Rename | Merge | Split | Restore
_OP_OF: dict[type[Any], str] = {
    SetText: "text",
    SetSpeaker: "speaker",
    Rename: "rename",
    Merge: "merge",
    Split: "split",
    Restore: "restore",
}


def edit_json(edit: Edit) -> dict[str, Any]:
    """An edit as a revision records it: the operation and its fields, as a client sends them."""
    data: dict[str, Any] = {"op": _OP_OF[type(edit)]}
    for name in edit.__dataclass_fields__:
        value = getattr(edit, name)
        if value is not None:
            data[name] = list(value) if isinstance(value, tuple) else value
    return data


def parse_edits(raw: Any) -> list[Edit]:
    """The edits of a request's ``edits``; InvalidInputError naming the edit (from 0) and what is wrong."""
    if not isinstance(raw, list):
        raise InvalidInputError("edits must be a list of edit operations")
    if not raw:
        raise InvalidInputError("edits is empty: send at least one edit")
    if len(raw) > MAX_EDITS:
        raise InvalidInputError(f"at most {MAX_EDITS} edits per request ({len(raw)} sent)")
    return [_parse(index, item) for index, item in enumerate(raw)]


_FIELDS = {
    "text": ({"segment", "text"}, set()),
    "speaker": ({"segment", "speaker"}, set()),
    "rename": ({"speaker", "to"}, {"remember"}),
    "merge": ({"segments"}, set()),
    "split": ({"segment"}, {"word", "char"}),
    "restore": ({"revision"}, set()),
}


def _parse(index: int, item: Any) -> Edit:
    where = f"edit {index}"
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"{where}: an edit is a JSON object with an `op`")
    op = item.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise InvalidInputError(f"{where}: `op` must be one of {', '.join(OPERATIONS)}")
    required, optional = _FIELDS[op]
    unknown = sorted(set(item) - required - optional - {"op"})
    if unknown:
        raise InvalidInputError(f"{where}: {op} takes no field {unknown[0]!r}")
    missing = sorted(required - set(item))
    if missing:
        raise InvalidInputError(f"{where}: {op} needs `{missing[0]}`")
    if op == "text":
        return SetText(_index(item, "segment", where), _text(item["text"], where))
    if op == "speaker":
        return SetSpeaker(_index(item, "segment", where), _name(item, "speaker", where))
    if op == "rename":
        remember = item.get("remember", False)
        if not isinstance(remember, bool):
            raise InvalidInputError(f"{where}: `remember` must be true or false")
        return Rename(_name(item, "speaker", where), _name(item, "to", where), remember)
    if op == "merge":
        ids = item["segments"]
        if not isinstance(ids, list) or len(ids) < 2 or not all(_is_index(value) for value in ids):
            raise InvalidInputError(
                f"{where}: merge takes `segments`, two or more segment ids such as [4, 5]"
            )
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise InvalidInputError(f"{where}: merge takes neighbouring segments in order, such as [4, 5]")
        return Merge(tuple(ids))
    if op == "split":
        if ("word" in item) == ("char" in item):
            raise InvalidInputError(
                f"{where}: split takes either `word` (a word index) or `char` (a character offset)"
            )
        segment = _index(item, "segment", where)
        if "word" in item:
            return Split(segment, word=_index(item, "word", where))
        return Split(segment, char=_index(item, "char", where))
    revision = item["revision"]
    if revision == "original":
        return Restore(0)
    if not _is_index(revision):
        raise InvalidInputError(f'{where}: `revision` must be a revision number or "original"')
    return Restore(revision)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _index(item: Mapping[str, Any], key: str, where: str) -> int:
    value = item[key]
    if not _is_index(value):
        raise InvalidInputError(f"{where}: `{key}` must be a whole number from 0")
    return int(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: `text` must be a string")
    found = control_character(value, allowed="\t\n\r")
    if found is not None:
        raise InvalidInputError(f"{where}: `text` contains a control character ({found})")
    text = " ".join(value.split())  # one line, as every segment's text is
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInputError(f"{where}: `text` is longer than {MAX_TEXT_LENGTH} characters")
    return text


def _name(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where}: `{key}` must be a speaker's name")
    found = control_character(value)
    if found is not None:
        raise InvalidInputError(f"{where}: `{key}` contains a control character ({found})")
    name = " ".join(value.split())
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"{where}: `{key}` is longer than {MAX_NAME_LENGTH} characters")
    return name


# --- applying them -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Remember:
    """A ``rename`` with ``remember``: the job's voice of diarizer label ``label`` is the person ``name``."""

    edit: int
    label: str | None
    name: str


@dataclass(frozen=True, slots=True)
class Revised:
    transcript: Transcript
    remember: list[Remember] = field(default_factory=list)


def apply_edits(
    transcript: Transcript, edits: Sequence[Edit], revisions: Mapping[int, Transcript] | None = None
) -> Revised:
    """``transcript`` after ``edits``, in order; ``revisions``: the earlier revisions ``restore`` edits name.
    InvalidInputError naming the edit when one does not fit the transcript as the edits before left it."""
    work = _Work(
        list(transcript.segments), _speaker_info(transcript.speakers), transcript.speakers is not None
    )
    remember: list[Remember] = []
    for index, edit in enumerate(edits):
        where = f"edit {index}"
        if isinstance(edit, SetText):
            work.replace(edit.segment, where, [_retext(work.segment(edit.segment, where), edit.text)])
        elif isinstance(edit, SetSpeaker):
            work.info.setdefault(edit.speaker, work.blank())
            work.replace(edit.segment, where, [_said_by(work.segment(edit.segment, where), edit.speaker)])
        elif isinstance(edit, Rename):
            label = work.rename(edit.speaker, edit.to, where)
            if edit.remember:
                remember.append(Remember(index, label, edit.to))
        elif isinstance(edit, Merge):
            for number in edit.segments:
                work.segment(number, where)
            merged = _merged([work.segments[number] for number in edit.segments])
            work.segments[edit.segments[0] : edit.segments[-1] + 1] = [merged]
        elif isinstance(edit, Split):
            work.replace(edit.segment, where, _split(work.segment(edit.segment, where), edit, where))
        else:
            restored = (revisions or {}).get(edit.revision)
            if restored is None:
                raise InvalidInputError(f"{where}: this job has no revision {edit.revision}")
            work = _Work(
                list(restored.segments), _speaker_info(restored.speakers), restored.speakers is not None
            )
        work.segments = [_numbered(segment, number) for number, segment in enumerate(work.segments)]
    return Revised(Transcript(work.segments, work.speaker_list()), remember)


@dataclass
class _Work:
    """The transcript as the edits so far left it."""

    segments: list[dict[str, Any]]
    #: what each speaker's entry says beside its name and time (label, speaker_id, distance), by name
    info: dict[str, dict[str, Any]]
    listed: bool  # whether the transcript has a speakers list (else only once an edit names someone)

    def segment(self, number: int, where: str) -> dict[str, Any]:
        if number >= len(self.segments):
            count = len(self.segments)
            raise InvalidInputError(
                f"{where}: no segment {number} (the transcript has {count}: 0 to {count - 1})"
            )
        return self.segments[number]

    def replace(self, number: int, where: str, new: list[dict[str, Any]]) -> None:
        self.segment(number, where)
        self.segments[number : number + 1] = new

    def rename(self, old: str, new: str, where: str) -> str | None:
        """Rename ``old`` to ``new`` everywhere; the diarizer's label of ``old``'s voice."""
        used = {str(segment["speaker"]) for segment in self.segments if segment.get("speaker") is not None}
        if old not in used:
            known = ", ".join(sorted(used)) or "none: it was transcribed without diarize"
            raise InvalidInputError(
                f"{where}: no speaker named {old!r} in this transcript (its speakers: {known})"
            )
        before = self.info.get(old)
        label = before.get("label", old) if before is not None else old
        if old != new:
            self.segments = [_renamed(segment, old, new) for segment in self.segments]
            self.info.pop(old, None)
            if new not in self.info and before is not None:
                self.info[new] = before
        return None if label is None else str(label)

    def blank(self) -> dict[str, Any]:
        """What the entry of a speaker no diarizer found says beside its name: every key the others have,
        null (no label: no voice of the job's is theirs)."""
        return dict.fromkeys(sorted({key for entry in self.info.values() for key in entry}))

    def speaker_list(self) -> list[dict[str, Any]] | None:
        totals: dict[str, float] = {}
        for segment in self.segments:
            name = segment.get("speaker")
            if name is not None:
                seconds = max(float(segment["end"]) - float(segment["start"]), 0.0)
                totals[name] = totals.get(name, 0.0) + seconds
        if not totals and not self.listed:
            return None
        blank = self.blank()
        return [
            {"speaker": name, "duration": round(totals[name], _DIGITS), **self.info.get(name, blank)}
            for name in sorted(totals)
        ]


def _speaker_info(speakers: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {
        str(entry["speaker"]): {
            key: value for key, value in entry.items() if key not in ("speaker", "duration")
        }
        for entry in speakers or ()
        if entry.get("speaker") is not None
    }


def _numbered(segment: dict[str, Any], number: int) -> dict[str, Any]:
    return segment if segment.get("id") == number else {**segment, "id": number}


def _without_tokens(segment: dict[str, Any]) -> dict[str, Any]:
    """``segment`` whose ``decoded`` no longer lists the window's tokens (they spelled the text as it was)."""
    decoded = segment.get("decoded")
    if isinstance(decoded, Mapping) and "tokens" in decoded:
        return {**segment, "decoded": {key: value for key, value in decoded.items() if key != "tokens"}}
    return segment


def _retext(segment: dict[str, Any], text: str) -> dict[str, Any]:
    if text == segment.get("text", ""):
        return segment
    revised = {**segment, "text": text, "edited": True}
    words = segment.get("words")
    if words is not None:
        revised["words"] = _kept_words(words, text)
    return _without_tokens(revised)


def _key(token: str) -> str:
    """A token as compared: case folded, punctuation left out (kept when it is all the token has)."""
    folded = unicodedata.normalize("NFKC", token).casefold()
    letters = "".join(char for char in folded if not unicodedata.category(char).startswith("P"))
    return letters or folded


def _kept_words(words: Sequence[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The words heard that ``text`` still has (each spelled as ``text`` now spells it), with their times."""
    tokens = text.split()
    matcher = SequenceMatcher(
        None,
        [_key(str(word["word"]).strip()) for word in words],
        [_key(token) for token in tokens],
        autojunk=False,
    )
    kept = []
    for first_word, first_token, size in matcher.get_matching_blocks():
        for offset in range(size):
            word = words[first_word + offset]
            spelled = str(word["word"])
            space = spelled[: len(spelled) - len(spelled.lstrip())]  # Whisper's words bring their space
            kept.append({**word, "word": space + tokens[first_token + offset]})
    return kept


def _said_by(segment: dict[str, Any], speaker: str) -> dict[str, Any]:
    """``segment`` and its words said by ``speaker``."""
    moved = {**segment, "speaker": speaker}
    if segment.get("words") is not None:
        moved["words"] = [{**word, "speaker": speaker} for word in segment["words"]]
    return moved


def _renamed(segment: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    words = segment.get("words")
    if segment.get("speaker") != old and not any(word.get("speaker") == old for word in words or ()):
        return segment
    renamed = {**segment, "speaker": new} if segment.get("speaker") == old else dict(segment)
    if words is not None:
        renamed["words"] = [
            {**word, "speaker": new} if word.get("speaker") == old else word for word in words
        ]
    return renamed


def _merged(segments: list[dict[str, Any]]) -> dict[str, Any]:
    first = segments[0]
    merged = {
        **first,
        "start": min(float(segment["start"]) for segment in segments),
        "end": max(float(segment["end"]) for segment in segments),
        "text": joined_text(segments),
    }
    if any(segment.get("edited") for segment in segments):
        merged["edited"] = True
    if all(segment.get("words") is not None for segment in segments):
        merged["words"] = [word for segment in segments for word in segment["words"]]
    else:
        merged.pop("words", None)  # one without word times: the merged one has none it can trust in order
    merged = _without_tokens(merged)
    speaker = first.get("speaker")
    return merged if speaker is None else _said_by(merged, speaker)


def _split(segment: dict[str, Any], edit: Split, where: str) -> list[dict[str, Any]]:
    text = str(segment.get("text", ""))
    words = segment.get("words")
    starts = _word_starts(segment) if words is not None else []
    if edit.word is not None:
        if not words or not 1 <= edit.word < len(words):
            count = len(words or ())
            raise InvalidInputError(
                f"{where}: segment {edit.segment} has {count} words with times: `word` must be from 1 to "
                f"{count - 1} (or split at a character offset, `char`)"
                if count > 1
                else f"{where}: segment {edit.segment} has no two words with times: split it at a character "
                "offset (`char`)"
            )
        cut = starts[edit.word]
        if cut is None:
            raise InvalidInputError(
                f"{where}: word {edit.word} of segment {edit.segment} is not found in its text: split at a "
                "character offset (`char`)"
            )
    else:
        assert edit.char is not None
        cut = edit.char
    head, tail = text[:cut].strip(), text[cut:].strip()
    if not head or not tail:
        raise InvalidInputError(
            f"{where}: the cut must leave text on both sides (segment {edit.segment}'s text has {len(text)} "
            "characters)"
        )
    first = {**segment, "text": head}
    second = {**segment, "text": tail}
    start, end = float(segment["start"]), float(segment["end"])
    before_cut: float | None = None
    after_cut: float | None = None
    if words is not None:
        ahead: list[dict[str, Any]] = []
        behind: list[dict[str, Any]] = []
        cut_word = False
        for word, at in zip(words, starts, strict=True):
            length = len(str(word["word"]).strip())
            if at is not None and at + length <= cut:
                ahead.append(word)
            elif at is not None and at >= cut:
                behind.append(word)
            else:  # cut through, or not placed in the text: its times would be a guess
                cut_word = True
        first["words"], second["words"] = ahead, behind
        if cut_word:
            first["edited"] = second["edited"] = True
        before_cut = float(ahead[-1]["end"]) if ahead else None
        after_cut = float(behind[0]["start"]) if behind else None
    estimate = start + (end - start) * cut / len(text)
    first_end = before_cut if before_cut is not None else after_cut if after_cut is not None else estimate
    second_start = after_cut if after_cut is not None else first_end
    first["end"] = round(min(max(first_end, start), end), _DIGITS)
    second["start"] = round(min(max(second_start, first["end"]), end), _DIGITS)
    return [_without_tokens(first), _without_tokens(second)]


def _word_starts(segment: dict[str, Any]) -> list[int | None]:
    """Where each of the segment's words begins in its text (None: not found there)."""
    words = segment["words"]
    text = str(segment.get("text", ""))
    spelled = "".join(str(word["word"]) for word in words)
    if not segment.get("edited") and spelled.strip() == text:  # as Whisper wrote it: the words spell it
        starts: list[int | None] = []
        position = -(len(spelled) - len(spelled.lstrip()))
        for word in words:
            own = str(word["word"])
            starts.append(position + len(own) - len(own.lstrip()))
            position += len(own)
        return starts
    tokens = list(_TOKEN.finditer(text))
    matcher = SequenceMatcher(
        None,
        [_key(str(word["word"]).strip()) for word in words],
        [_key(token.group()) for token in tokens],
        autojunk=False,
    )
    found: list[int | None] = [None] * len(words)
    for first_word, first_token, size in matcher.get_matching_blocks():
        for offset in range(size):
            found[first_word + offset] = tokens[first_token + offset].start()
    return found

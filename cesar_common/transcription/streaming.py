"""Live transcription's decoding policy: which words of a growing audio stream are final, and when.

Whisper decodes a window of audio at once and has no streaming mode: a word near the end of the audio it
is given may change when more audio follows ("the mill" heard as "the mil" until the rest arrives). This
module turns it into a streaming recogniser by *LocalAgreement-2*, the policy of Macháček, Dabre and
Bojar, "Turning Whisper into Real-Time Transcription System" (IJCNLP-AACL 2023 demo; their
whisper_streaming's ``OnlineASRProcessor`` and ``HypothesisBuffer``): the audio not yet confirmed is kept
in a buffer, decoded again whenever about a second more has arrived (:attr:`StreamingOptions.step_seconds`),
and a word is *confirmed* once two consecutive passes agree on it: the longest common prefix of their
hypotheses. The rest is *tentative*: shown, but free to change. Confirmed audio is cut off the buffer at a
sentence end once it is long (:attr:`StreamingOptions.trim_seconds`), so a pass decodes seconds, not the
whole session, and a step never more than Whisper's 30 s window.

:class:`LocalAgreement` holds one stream's state and knows nothing of sockets or the job store: it is fed
samples (:meth:`LocalAgreement.add_audio`), asked to decode (:meth:`LocalAgreement.step`) and told when
the audio is over (:meth:`LocalAgreement.finish`). The decoder is a plain function (:data:`DecodeWords`),
so the policy is tested with scripted fakes; :func:`whisper_decoder` is the real one.

Guarantees:

* a word is confirmed once: confirmed words never change (they leave as segments), and each starts at or
  after the previous one's end, so no stretch of audio yields words twice. A pass that hears a confirmed
  word again (Whisper's times move a little between passes, and a cut buffer may start with the tail of
  its last word) has it dropped by whisper_streaming's two checks: time, and the repeated n-gram;
* a confirmed word never ends after the audio added so far (:attr:`LocalAgreement.audio_end`);
* trimming the buffer cuts only at the end of a confirmed word, so no word that could still be confirmed
  is lost; the only exceptions are documented where they happen: seconds in which nothing at all was
  heard, and audio that two passes never agreed on while a whole window of it was decoded again and again;
* :meth:`LocalAgreement.finish` confirms everything the last pass heard;
* every time is session time (seconds since the session's first sample), rounded to the millisecond, a
  plain Python float.

Importing this module imports NumPy and Cesar's light modules only: :func:`whisper_decoder` imports
faster-whisper (through the adapter) when it is called, so the API, which never decodes, can import it.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cesar_common.transcription.audio import SAMPLE_RATE
from cesar_common.transcription.result import Word
from cesar_common.transcription.sentences import ends_clause, ends_sentence

if TYPE_CHECKING:
    from cesar_common.transcription.loading import LoadedModel

__all__ = [
    "DecodeWords",
    "LocalAgreement",
    "StreamUpdate",
    "StreamingOptions",
    "sentence_segments",
    "whisper_decoder",
]

#: (16 kHz mono float32 samples, prompt text or None) -> the words heard, in seconds from the samples'
#: start, spelled as Whisper spells them (each with its leading space)
DecodeWords = Callable[[np.ndarray, str | None], list[Word]]

#: a new pass's word that starts this much before the confirmed end is taken for a confirmed word heard
#: again (Whisper's word times move by a few hundredths between passes): whisper_streaming's rule
_OVERLAP_TOLERANCE = 0.1
#: the longest run of confirmed words a new pass may repeat at its start (whisper_streaming's n-gram
#: check) ...
_REPEAT_WORDS = 5
#: ... looked for only when the pass's first word starts this close to the confirmed end
_REPEAT_WITHIN = 1.0
#: a pass that hears nothing at all in a buffer longer than this (VAD found no speech, or Whisper its
#: silence) ...
_SILENCE_SECONDS = 3.0
#: ... keeps only this much of its end: the start of a word just begun
_SILENCE_KEEP_SECONDS = 1.0
#: the confirmed text kept for the prompt, in multiples of ``prompt_chars``
_CONTEXT_FACTOR = 4
#: :func:`sentence_segments` never joins segments into one longer than this (Whisper's window, and far
#: longer than a subtitle cue should stay on screen)
_MAX_JOINED_SECONDS = 30.0
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class StreamingOptions:
    #: decode again once this much new audio arrived (:meth:`LocalAgreement.finish` decodes whatever is
    #: left): the paper's "minimum chunk size"; a word is confirmed about two steps after it is spoken
    step_seconds: float = 1.0
    #: a buffer longer than this is cut at the end of the last confirmed sentence in it (a pass decodes
    #: the whole buffer, so its cost grows with it)
    trim_seconds: float = 15.0
    #: never decode more than this (Whisper's window is 30 s): a buffer that the next step's audio would
    #: take past it is cut at the last confirmed word's end, wherever the sentence is
    max_buffer_seconds: float = 30.0
    #: the end of the confirmed text that went before the buffer, given to Whisper as its prompt
    prompt_chars: int = 200
    #: a pause this long between two confirmed words ends a segment
    pause_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    #: newly confirmed segments, in order: ``start``, ``end``, ``text``, ``words`` (each
    #: :meth:`Word.to_dict`), in session time; no ``id``: the store numbers them
    segments: list[dict[str, Any]]
    #: the text heard but not yet confirmed ("" when none), stripped
    tentative: str
    #: the session time where the tentative text starts (None when there is none)
    tentative_start: float | None
    #: whether this call ran the decoder
    decoded: bool


class LocalAgreement:
    """One live stream: its audio buffer, the last pass's hypothesis and what is confirmed.

    Not thread-safe: one caller feeds it and asks it to decode (the worker's session loop).
    """

    def __init__(
        self,
        decode: DecodeWords,
        options: StreamingOptions = StreamingOptions(),  # frozen: one default shared is safe
        *,
        offset: float = 0.0,
        confirmed_text: str = "",
    ) -> None:
        """``offset``: the session time of the first sample that will be added (a session resumed after
        its confirmed segments starts there); ``confirmed_text``: the text confirmed before it (for the
        prompt, and so that the new audio's first pass does not confirm its last words again)."""
        self._decode = decode
        self._options = options
        self._offset = float(offset)
        self._audio = np.zeros(0, dtype=np.float32)  # the buffer: the audio not cut off yet
        self._buffer_start = 0  # where the buffer starts, in samples since ``offset``
        self._total = 0  # samples added since ``offset``
        self._decoded_at = 0  # ``_total`` when the last pass ran
        self._confirmed_end = self._offset
        # confirmed words whose audio is still in the buffer: a trim cuts at one of their ends
        self._in_buffer: list[Word] = []
        # the confirmed text before the buffer: the prompt's source. Text still in the buffer stays out
        # of the prompt (as in whisper_streaming): prompted with words whose audio it is also given,
        # Whisper tends to skip them and to time the next words over their audio, and those words would
        # then be taken for confirmed ones heard again and dropped.
        self._context = confirmed_text.strip()
        # the last confirmed words, normalised, for the n-gram check
        self._recent: deque[str] = deque(
            (_norm(word) for word in confirmed_text.split()[-_REPEAT_WORDS:]), maxlen=_REPEAT_WORDS
        )
        self._hypothesis: list[Word] = []  # the last pass's words not confirmed yet, session time
        self._finished = False

    # -- the audio ---------------------------------------------------------------------------------

    def add_audio(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 ``samples`` to the buffer."""
        if self._finished:
            raise RuntimeError("the stream is finished: no more audio can be added")
        chunk = np.asarray(samples, dtype=np.float32).reshape(-1)
        if chunk.size:
            self._audio = np.concatenate((self._audio, chunk))
            self._total += int(chunk.size)

    @property
    def audio_end(self) -> float:
        """The session time of the end of the audio added so far."""
        return round(self._time(self._total), 3)

    @property
    def confirmed_end(self) -> float:
        """The session time up to which everything is confirmed: the last confirmed word's end, or the
        offset when none is."""
        return self._confirmed_end

    @property
    def buffer_seconds(self) -> float:
        """How much audio the next pass would decode."""
        return (self._total - self._buffer_start) / SAMPLE_RATE

    # -- decoding ----------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether at least ``step_seconds`` of audio arrived since the last pass."""
        return not self._finished and (self._total - self._decoded_at) >= self._samples(
            self._options.step_seconds
        )

    def step(self) -> StreamUpdate:
        """Decode the buffer if :meth:`ready` (else nothing changes, and ``decoded`` is False), and confirm
        the words this pass and the previous one agree on."""
        if not self.ready():
            return self._update([], decoded=False)
        forced = self._limit_buffer()
        heard, words = self._pass()
        agreed = _common_prefix(words, self._hypothesis)
        self._hypothesis = words[len(agreed) :]
        confirmed = forced + self._confirm(agreed)
        self._trim()
        if not heard and self.buffer_seconds > _SILENCE_SECONDS:
            # Nothing at all was heard in seconds of audio (VAD, the decoder's job, found no speech): it
            # would only be decoded again and again, each pass longer. Its last second stays, as it may
            # hold the start of a word the next audio completes.
            self._cut(self.audio_end - _SILENCE_KEEP_SECONDS)
        return self._update(confirmed, decoded=True)

    def finish(self) -> StreamUpdate:
        """The audio is over: decode what is left once and confirm all of it (later calls do nothing)."""
        if self._finished:
            return self._update([], decoded=False)
        self._finished = True
        decoded = False
        if self._total > self._decoded_at and self.buffer_seconds > 0:
            # Whatever its length: Whisper decodes a longer buffer window after window, and cutting
            # audio nobody will hear again would lose its words.
            _, words = self._pass()
            decoded = True
        else:
            words = self._hypothesis  # the last pass already decoded all there is
        self._hypothesis = []
        return self._update(self._confirm(words), decoded=decoded)

    def flush(self) -> StreamUpdate:
        """A turn ended (its speaker stopped, or the client committed it): decode what is left once,
        confirm all of it, and empty the buffer; the next turn's audio starts a new one, with this turn's
        text as its prompt."""
        if self._finished:
            return self._update([], decoded=False)
        decoded = False
        if self._total > self._decoded_at and self.buffer_seconds > 0:
            _, words = self._pass()
            decoded = True
        else:
            words = self._hypothesis
        self._hypothesis = []
        confirmed = self._confirm(words)
        self._cut(self.audio_end)
        return self._update(confirmed, decoded=decoded)

    def clear(self) -> StreamUpdate:
        """The client dropped the audio it sent since the last turn: none of it is confirmed."""
        self._hypothesis = []
        self._decoded_at = self._total
        self._cut(self.audio_end)
        return self._update([], decoded=False)

    # -- internals ---------------------------------------------------------------------------------

    def _pass(self) -> tuple[bool, list[Word]]:
        """Decode the buffer: whether anything was heard, and the words that are new (session time)."""
        start = self._time(self._buffer_start)
        end = self._time(self._total)
        raw = self._decode(self._audio, self._prompt())
        self._decoded_at = self._total
        words = []
        for word in raw:
            # Whisper may place a word's edge past the audio it was given: a word cannot end after the
            # audio that holds it, nor start before it
            word_start = min(max(start + float(word.start), start), end)
            word_end = min(max(start + float(word.end), word_start), end)
            words.append(Word(word_start, word_end, word.word, float(word.probability)))
        return bool(raw), self._drop_repeats(words)

    def _drop_repeats(self, words: list[Word]) -> list[Word]:
        """``words`` less those that are confirmed words heard again (whisper_streaming's
        ``HypothesisBuffer.insert``): those starting before the confirmed end, and a run at the start
        that repeats the last confirmed words (the buffer is cut at a word's end, and the next pass may
        hear that word's tail again, or Whisper re-time it)."""
        new = [word for word in words if word.start > self._confirmed_end - _OVERLAP_TOLERANCE]
        if new and self._recent and abs(new[0].start - self._confirmed_end) < _REPEAT_WITHIN:
            recent = list(self._recent)
            # the longest repeat first: "the the" confirmed and "the the cat" heard drops both
            for n in range(min(len(recent), len(new), _REPEAT_WORDS), 0, -1):
                if [_norm(word.word) for word in new[:n]] == recent[-n:]:
                    return new[n:]
        return new

    def _confirm(self, words: Sequence[Word]) -> list[Word]:
        """Record ``words`` as confirmed, timed so that none starts before the previous one ends."""
        confirmed = []
        for word in words:
            start = round(max(word.start, self._confirmed_end), 3)
            end = round(max(word.end, start), 3)
            final = Word(start, end, word.word, round(float(word.probability), 4))
            confirmed.append(final)
            self._confirmed_end = end
            self._in_buffer.append(final)
            self._recent.append(_norm(word.word))
        return confirmed

    def _trim(self) -> None:
        """Cut confirmed audio off a long buffer: at the last confirmed sentence end once longer than
        ``trim_seconds`` (the next pass starts a sentence, with the text before as its prompt); at the
        last confirmed word's end, wherever the sentence is, once the next step's audio would take it
        past ``max_buffer_seconds``."""
        options = self._options
        if self.buffer_seconds > options.trim_seconds:
            ends = [word for word in self._in_buffer if ends_sentence(word.word)]
            if ends:
                self._cut(ends[-1].end)
        if self.buffer_seconds > options.max_buffer_seconds - options.step_seconds and self._in_buffer:
            self._cut(self._in_buffer[-1].end)

    def _limit_buffer(self) -> list[Word]:
        """Before a pass: a buffer longer than ``max_buffer_seconds`` (audio arrived faster than the passes
        ran, or no sentence was confirmed in it) is cut at the last confirmed word's end. If it is still
        too long, the last pass's words over its oldest audio are confirmed as that pass heard them (the
        words returned), and the buffer is cut after them; only audio in which nothing was heard is ever
        dropped."""
        limit = self._options.max_buffer_seconds
        if self.buffer_seconds > limit and self._in_buffer:
            self._cut(self._in_buffer[-1].end)
        forced: list[Word] = []
        if self.buffer_seconds > limit and self._hypothesis:
            # Two passes never agreed on the oldest audio although it was decoded for a whole window
            # (or the passes fall behind the audio, each starting somewhere new): dropping it would lose
            # its words, and every later pass would start mid-word and agree on nothing. One pass's word
            # for it is better than none.
            horizon = self.audio_end - limit + self._options.step_seconds
            taken = list(itertools.takewhile(lambda word: word.end <= horizon, self._hypothesis))
            taken = taken or self._hypothesis[:1]
            self._hypothesis = self._hypothesis[len(taken) :]
            forced = self._confirm(taken)
            self._cut(forced[-1].end)
        if self.buffer_seconds > limit:
            # nothing was heard in the oldest audio (or nothing since the last word taken): silence
            self._cut(self.audio_end - limit)
        return forced

    def _cut(self, time: float) -> None:
        """Move the buffer's start to session time ``time`` (never backwards, never past its end)."""
        position = min(max(self._samples(time - self._offset), self._buffer_start), self._total)
        self._audio = self._audio[position - self._buffer_start :].copy()
        self._buffer_start = position
        start = self._time(position)
        # confirmed words now before the buffer become prompt text
        left = [word for word in self._in_buffer if word.end <= start + 1e-6]
        self._in_buffer = self._in_buffer[len(left) :]
        if left:
            self._context = (self._context + "".join(word.word for word in left))[
                -_CONTEXT_FACTOR * max(self._options.prompt_chars, 1) :
            ]
        # the last pass's words before the cut are gone with their audio: the next pass cannot agree
        # on them, and agreeing on the rest must not wait for them
        self._hypothesis = [word for word in self._hypothesis if word.end > start]

    def _prompt(self) -> str | None:
        """The last ``prompt_chars`` of the confirmed text before the buffer, from a word's start."""
        limit = self._options.prompt_chars
        if limit <= 0 or not self._context:
            return None
        tail = self._context[-limit:]
        if len(self._context) > limit and not self._context[-limit - 1].isspace():
            tail = tail.partition(" ")[2]  # it began inside a word: from the next one
        return tail.strip() or None

    def _update(self, confirmed: list[Word], *, decoded: bool) -> StreamUpdate:
        tentative = "".join(word.word for word in self._hypothesis).strip()
        return StreamUpdate(
            segments=[_segment(piece) for piece in _pieces(confirmed, self._options.pause_seconds)],
            tentative=tentative,
            tentative_start=round(self._hypothesis[0].start, 3) if tentative else None,
            decoded=decoded,
        )

    def _time(self, samples: int) -> float:
        """The session time ``samples`` after the offset, unrounded: only what leaves is rounded, once."""
        return self._offset + samples / SAMPLE_RATE

    @staticmethod
    def _samples(seconds: float) -> int:
        return round(seconds * SAMPLE_RATE)


def whisper_decoder(
    loaded: LoadedModel,
    *,
    language: str | None,
    task: str = "transcribe",
    beam_size: int = 5,
    vad: bool = True,
) -> DecodeWords:
    """A :data:`DecodeWords` that runs ``loaded``'s Whisper with word timestamps, VAD on by default (so
    that silence decodes to nothing quickly). Pass the language: ``None`` detects it on every pass."""
    from cesar_common.transcription import faster_whisper_adapter as adapter

    def decode(samples: np.ndarray, prompt: str | None) -> list[Word]:
        decoding = adapter.Decoding(
            language=language,
            task=task,
            beam_size=beam_size,
            initial_prompt=prompt,
            vad=vad,
            word_timestamps=True,
        )
        # The batched pipeline with batches of one: a buffer (at most 30 s) is one window, encoded once.
        # Sequential decoding with word timestamps goes back to the last word's end whenever the window's
        # text does not end with a finished segment, as a buffer cut mid-speech usually does, and encodes
        # a second window for the rest: twice the cost of a pass (its encoder is most of it).
        segments, _ = adapter.transcribe_batched(loaded.whisper, samples, decoding, batch_size=1)
        # the segments come out lazily: all of them are decoded here, inside the call
        return [
            Word(float(word.start), float(word.end), word.word, float(word.probability))
            for segment in segments
            for word in segment.words or ()
        ]

    return decode


def sentence_segments(
    segments: Iterable[dict[str, Any]], *, pause_seconds: float = 1.0
) -> list[dict[str, Any]]:
    """Live segments (each step's confirmed words, often a few words long) joined into sentence-sized
    ones for the final transcript: consecutive segments are joined until one's text ends a sentence or a
    clause (. ? ! , ; : and their full-width forms), the gap to the next is at least ``pause_seconds``,
    or the joined segment would last more than 30 s (a subtitle cue, Whisper's window). The joined
    segment starts at the first one's start, ends at the last one's end, has all their words (when they
    have words) and its text is made again from them (as Whisper spells them)."""
    joined: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []
    for segment in segments:
        if group and (
            _ends_phrase(str(group[-1].get("text", "")))
            or float(segment["start"]) - float(group[-1]["end"]) >= pause_seconds
            or float(segment["end"]) - float(group[0]["start"]) > _MAX_JOINED_SECONDS
        ):
            joined.append(_joined(group))
            group = []
        group.append(segment)
    if group:
        joined.append(_joined(group))
    return joined


def _ends_phrase(text: str) -> bool:
    return ends_sentence(text) or ends_clause(text)


def _joined(group: list[dict[str, Any]]) -> dict[str, Any]:
    words = [word for segment in group for word in segment.get("words") or ()]
    with_words = all(segment.get("words") is not None for segment in group)
    if with_words and words:
        # stored words have no leading space (see _segment); Whisper's spelling has one: either joins
        text = "".join(_spaced(str(word["word"])) for word in words).strip()
    else:
        text = " ".join(str(segment.get("text", "")).strip() for segment in group).strip()
    joined: dict[str, Any] = {
        "start": float(group[0]["start"]),
        "end": float(group[-1]["end"]),
        "text": text,
    }
    if any(segment.get("words") is not None for segment in group):
        joined["words"] = [dict(word) for word in words]
    return joined


def _spaced(word: str) -> str:
    return word if word[:1].isspace() else " " + word


def _norm(word: str) -> str:
    """A word as two passes are compared: lower case, without punctuation or spaces."""
    return _NOT_WORD.sub("", word.lower())


def _common_prefix(new: Sequence[Word], previous: Sequence[Word]) -> list[Word]:
    """The longest run of ``new``'s words, from its start, that ``previous`` has too (in ``new``'s
    times: the later pass heard more of the audio after them)."""
    agreed = []
    for mine, theirs in zip(new, previous, strict=False):
        if _norm(mine.word) != _norm(theirs.word):
            break
        agreed.append(mine)
    return agreed


def _pieces(words: Sequence[Word], pause_seconds: float) -> list[list[Word]]:
    """``words`` split after each word that ends a sentence and at each pause of ``pause_seconds``."""
    pieces: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current and word.start - current[-1].end >= pause_seconds:
            pieces.append(current)
            current = []
        current.append(word)
        if ends_sentence(word.word):
            pieces.append(current)
            current = []
    if current:
        pieces.append(current)
    return pieces


def _segment(words: Sequence[Word]) -> dict[str, Any]:
    """A live segment as the store keeps segments: its words without their leading space, as the file
    engine stores them (:mod:`whisper`), its text as Whisper spelled the words."""
    return {
        "start": float(words[0].start),
        "end": float(words[-1].end),
        "text": "".join(word.word for word in words).strip(),
        "words": [{**word.to_dict(), "word": word.word.strip()} for word in words],
    }

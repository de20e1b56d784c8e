"""What a transcription produces: plain frozen records of Python floats, ready for JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Decoded", "Segment", "TranscriptionResult", "Word", "speaking_time"]


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None  # when the transcript was diarized

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "start": float(self.start),
            "end": float(self.end),
            "word": self.word,
            "probability": float(self.probability),
        }
        if self.speaker is not None:
            data["speaker"] = self.speaker
        return data


@dataclass(frozen=True, slots=True)
class Decoded:
    """How Whisper decoded the window a segment came from (OpenAI's ``verbose_json`` shows these).
    ``tokens`` only when the segment is the whole window: a sentence cut from one has no token list."""

    seek: int
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    tokens: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "seek": int(self.seek),
            "temperature": float(self.temperature),
            "avg_logprob": float(self.avg_logprob),
            "compression_ratio": float(self.compression_ratio),
            "no_speech_prob": float(self.no_speech_prob),
        }
        if self.tokens is not None:
            data["tokens"] = [int(token) for token in self.tokens]
        return data


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] | None = None
    decoded: Decoded | None = None
    speaker: str | None = None  # when the transcript was diarized
    #: its text was corrected by hand (cesar_common.transcript_edits): ``words`` holds only the words still
    #: as heard, with their times (a word typed in has none, and is not there)
    edited: bool = False

    @property
    def duration(self) -> float:
        return max(float(self.end) - float(self.start), 0.0)

    def to_dict(self, *, decoded: bool = True) -> dict[str, Any]:
        """As stored; ``decoded=False`` leaves out how the window was decoded (Cesar's own transcript
        formats do not show it; OpenAI's ``verbose_json`` does)."""
        data: dict[str, Any] = {
            "id": int(self.id),
            "start": float(self.start),
            "end": float(self.end),
            "text": self.text,
        }
        if self.speaker is not None:
            data["speaker"] = self.speaker
        if self.edited:
            data["edited"] = True
        if self.words is not None:
            data["words"] = [word.to_dict() for word in self.words]
        if decoded and self.decoded is not None:
            data["decoded"] = self.decoded.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default_id: int = 0) -> Segment:
        words = data.get("words")
        return cls(
            id=int(data.get("id", default_id)),
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data.get("text", "")),
            words=None
            if words is None
            else tuple(
                Word(
                    start=float(w["start"]),
                    end=float(w["end"]),
                    word=str(w["word"]),
                    probability=float(w.get("probability", 0.0)),
                    speaker=_speaker(w.get("speaker")),
                )
                for w in words
            ),
            decoded=_decoded(data.get("decoded")),
            speaker=_speaker(data.get("speaker")),
            edited=bool(data.get("edited", False)),
        )


def _speaker(value: Any) -> str | None:
    return None if value is None else str(value)


def _decoded(data: Any) -> Decoded | None:
    if not isinstance(data, Mapping):
        return None  # segments stored before Cesar kept it
    tokens = data.get("tokens")
    return Decoded(
        seek=int(data.get("seek", 0)),
        temperature=float(data.get("temperature", 0.0)),
        avg_logprob=float(data.get("avg_logprob", 0.0)),
        compression_ratio=float(data.get("compression_ratio", 0.0)),
        no_speech_prob=float(data.get("no_speech_prob", 0.0)),
        tokens=None if tokens is None else tuple(int(token) for token in tokens),
    )


def speaking_time(spans: Iterable[tuple[str | None, float]]) -> list[dict[str, Any]]:
    """Each speaker with their total speaking time (the sum of ``(speaker, seconds)`` spans), by name."""
    totals: dict[str, float] = {}
    for speaker, seconds in spans:
        if speaker is not None:
            totals[speaker] = totals.get(speaker, 0.0) + seconds
    return [{"speaker": name, "duration": round(totals[name], 3)} for name in sorted(totals)]


@dataclass(frozen=True, slots=True)
class TranscriptionResult:
    """One transcript. ``duration`` is the span of audio transcribed (the clip when clipped), in seconds."""

    text: str
    language: str | None
    language_probability: float | None
    duration: float
    segments: tuple[Segment, ...]
    model: str = ""
    device: str = ""
    compute_type: str = ""
    mode: str = "sequential"  # or "batched": faster-whisper's BatchedInferencePipeline
    batch_size: int = 1  # windows decoded at once; 1 when sequential
    #: each speaker's voice print (when diarized by a diarizer that gives them): a long file's parts are
    #: diarized apart, and the prints tell which of their speakers are the same voice
    voices: dict[str, list[float]] | None = None
    parts: int = 1  # a long file cut into parts (CESAR_SPLIT_SECONDS) ...
    workers: int = 1  # ... transcribed by this many workers
    #: where a live stream URL dropped: ``{"at": seconds into the audio, "seconds": how long, "reason"}``
    gaps: tuple[dict[str, Any], ...] = ()

    @property
    def diarized(self) -> bool:
        return any(segment.speaker is not None for segment in self.segments)

    def speakers(self) -> list[dict[str, Any]]:
        """Each speaker with their total speaking time in seconds (the sum of their segments), in order
        of name (``SPEAKER_00`` first: the first to speak); empty when not diarized."""
        return speaking_time((segment.speaker, segment.duration) for segment in self.segments)

    def segments_as_dicts(self) -> list[dict[str, Any]]:
        """The segments as the job store keeps them (``words`` only on segments that have them)."""
        return [segment.to_dict() for segment in self.segments]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; how it was run (model, device, ...) only when known (jobs completed by Cesar
        before version 0003 of the schema did not keep it)."""
        data: dict[str, Any] = {
            "text": self.text,
            "language": self.language,
            "language_probability": None
            if self.language_probability is None
            else float(self.language_probability),
            "duration": float(self.duration),
            "segments": [segment.to_dict(decoded=False) for segment in self.segments],
        }
        if self.diarized:
            data["speakers"] = self.speakers()
        if self.model:
            data.update(
                model=self.model,
                device=self.device,
                compute_type=self.compute_type,
                mode=self.mode,
                batch_size=int(self.batch_size),
            )
            if self.parts > 1:
                data.update(parts=self.parts, workers=self.workers)
        if self.gaps:  # the audio has holes its segments do not show: said, not hidden
            data["gaps"] = [dict(gap) for gap in self.gaps]
        return data

    @classmethod
    def from_stored(
        cls,
        *,
        text: str | None,
        language: str | None,
        language_probability: float | None,
        duration: float | None,
        segments: list[dict[str, Any]] | None,
        model: str = "",
        device: str = "",
        compute_type: str = "",
        mode: str = "sequential",
        batch_size: int = 1,
        parts: int = 1,
        workers: int = 1,
        gaps: Sequence[dict[str, Any]] = (),
    ) -> TranscriptionResult:
        """Rebuild a result from the columns a finished job keeps in the database."""
        return cls(
            gaps=tuple(gaps),
            model=model,
            device=device,
            compute_type=compute_type,
            mode=mode,
            batch_size=batch_size,
            parts=parts,
            workers=workers,
            text=text or "",
            language=language,
            language_probability=None if language_probability is None else float(language_probability),
            duration=float(duration or 0.0),
            segments=tuple(
                Segment.from_dict(item, default_id=index) for index, item in enumerate(segments or [])
            ),
        )

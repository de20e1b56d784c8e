"""HLS playlists (RFC 8216) as a live stream URL's worker reads them: a master playlist names the variant to
follow, a media playlist the segments to fetch.

Only what following audio needs is read: segment URIs, durations and media sequence numbers, the target
duration (how often a live playlist is reloaded) and ``#EXT-X-ENDLIST`` (the stream is over). What Cesar
cannot feed FFmpeg as a stream of bytes is refused with a message that says so: encrypted segments
(``#EXT-X-KEY``) and fragmented MP4 (``#EXT-X-MAP``); MPEG-TS and packed audio (ADTS/AAC, MP3) segments are
what live audio streams use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urljoin

from cesar_common.errors import DownloadError

__all__ = [
    "MasterPlaylist",
    "MediaPlaylist",
    "Segment",
    "Variant",
    "looks_like_playlist",
    "parse_playlist",
    "pick_variant",
]

MEDIA_TYPES = frozenset(
    {"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"}
)
#: codecs (RFC 6381 names) of audio: a variant whose codecs are all of these carries no video
AUDIO_CODECS = ("mp4a", "mp3", "ac-3", "ec-3", "opus", "flac", "alac", "vorbis")
#: a live playlist is followed from this many segments before its end (RFC 8216 6.3.3: three target
#: durations), close to the live edge without waiting on a segment not written yet
LIVE_START_SEGMENTS = 3

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclass(frozen=True, slots=True)
class Segment:
    sequence: int  # its media sequence number: the next reload finds it again by this number
    uri: str  # absolute
    duration: float


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    target_duration: float
    segments: tuple[Segment, ...]
    ended: bool  # #EXT-X-ENDLIST: no segment will be added

    def live_start(self) -> int:
        """The sequence number to start following at: the first segment of an ended playlist (a
        recording), near the end of a live one."""
        if not self.segments:
            return 0
        start = 0 if self.ended else max(len(self.segments) - LIVE_START_SEGMENTS, 0)
        return self.segments[start].sequence


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str  # absolute
    bandwidth: int
    audio_only: bool


@dataclass(frozen=True, slots=True)
class MasterPlaylist:
    variants: tuple[Variant, ...]
    audio_renditions: tuple[str, ...]  # #EXT-X-MEDIA TYPE=AUDIO URIs, the default one first


def looks_like_playlist(content_type: str | None, first_bytes: bytes) -> bool:
    """Whether a response is an HLS playlist (by its media type or by its first line), not audio."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type in MEDIA_TYPES or first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"#EXTM3U")


def parse_playlist(text: str, base_url: str) -> MediaPlaylist | MasterPlaylist:
    """The playlist ``text`` fetched from ``base_url`` (relative URIs resolve against it); DownloadError
    when it is no playlist or one Cesar cannot follow."""
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[0] != "#EXTM3U":
        raise DownloadError(f"{base_url} is not an HLS playlist (no #EXTM3U first line)")
    if any(line.startswith("#EXT-X-STREAM-INF") for line in lines):
        return _master(lines, base_url)
    return _media(lines, base_url)


def pick_variant(master: MasterPlaylist) -> str:
    """The media playlist to follow: the audio-only variant of least bandwidth, else an audio rendition
    (the default one), else the variant of least bandwidth (its video is fetched and ignored)."""
    audio = [variant for variant in master.variants if variant.audio_only]
    if audio:
        return min(audio, key=lambda variant: variant.bandwidth).uri
    if master.audio_renditions:
        return master.audio_renditions[0]
    return min(master.variants, key=lambda variant: variant.bandwidth).uri


def _attributes(text: str) -> dict[str, str]:
    return {name: value.strip('"') for name, value in _ATTRIBUTE.findall(text)}


def _master(lines: list[str], base_url: str) -> MasterPlaylist:
    variants: list[Variant] = []
    renditions: list[tuple[bool, str]] = []
    pending: dict[str, str] | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attributes(line.partition(":")[2])
        elif line.startswith("#EXT-X-MEDIA:"):
            media = _attributes(line.partition(":")[2])
            if media.get("TYPE") == "AUDIO" and media.get("URI"):
                renditions.append((media.get("DEFAULT") == "YES", urljoin(base_url, media["URI"])))
        elif not line.startswith("#") and pending is not None:
            codecs = [
                codec.strip().lower() for codec in pending.get("CODECS", "").split(",") if codec.strip()
            ]
            audio_only = bool(codecs) and all(codec.startswith(AUDIO_CODECS) for codec in codecs)
            bandwidth = int(pending["BANDWIDTH"]) if pending.get("BANDWIDTH", "").isdigit() else 0
            variants.append(Variant(urljoin(base_url, line), bandwidth, audio_only))
            pending = None
    if not variants:
        raise DownloadError(f"the HLS playlist {base_url} names no stream to follow")
    renditions.sort(key=lambda rendition: not rendition[0])  # the default first, else in order
    return MasterPlaylist(tuple(variants), tuple(uri for _default, uri in renditions))


def _media(lines: list[str], base_url: str) -> MediaPlaylist:
    target = 0.0
    sequence = 0
    duration: float | None = None
    segments: list[Segment] = []
    ended = False
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-TARGETDURATION":
            target = _number(value, tag, base_url)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(_number(value, tag, base_url))
        elif tag == "#EXTINF":
            duration = _number(value.split(",")[0], tag, base_url)
        elif tag == "#EXT-X-ENDLIST":
            ended = True
        elif tag == "#EXT-X-KEY" and _attributes(value).get("METHOD", "NONE") != "NONE":
            raise DownloadError(
                f"the HLS stream {base_url} is encrypted (#EXT-X-KEY): Cesar follows unencrypted streams only"
            )
        elif tag == "#EXT-X-MAP":
            raise DownloadError(
                f"the HLS stream {base_url} has fragmented MP4 segments (#EXT-X-MAP): Cesar follows MPEG-TS "
                "and AAC or MP3 segments"
            )
        elif not line.startswith("#"):
            segments.append(Segment(sequence + len(segments), urljoin(base_url, line), duration or target))
            duration = None
    # a playlist without a target duration (against the RFC) is reloaded as often as most streams want
    return MediaPlaylist(target_duration=target or 6.0, segments=tuple(segments), ended=ended)


def _number(text: str, tag: str, base_url: str) -> float:
    try:
        number = float(text.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise DownloadError(f"the HLS playlist {base_url} has a malformed {tag}: {text.strip()!r}")
    return number

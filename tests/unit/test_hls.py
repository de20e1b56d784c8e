"""The HLS playlists a live stream URL's worker reads: which variant it follows, which segments, from where,
and what it refuses."""

from __future__ import annotations

import pytest

from cesar_common.errors import DownloadError
from cesar_worker.hls import MasterPlaylist, MediaPlaylist, looks_like_playlist, parse_playlist, pick_variant

BASE = "https://cdn.example/radio/live.m3u8"


def media(text: str) -> MediaPlaylist:
    playlist = parse_playlist(text, BASE)
    assert isinstance(playlist, MediaPlaylist)
    return playlist


def master(text: str) -> MasterPlaylist:
    playlist = parse_playlist(text, BASE)
    assert isinstance(playlist, MasterPlaylist)
    return playlist


LIVE = """\ufeff#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41

#EXTINF:2.000,
seg41.ts
#EXTINF:1.96,title
/radio/seg42.ts
#EXT-X-DISCONTINUITY
#EXTINF:2,
https://other.example/seg43.ts
#EXTINF:2.04,
seg44.ts?token=a,b
"""


def test_a_live_media_playlist_numbers_its_segments_and_resolves_their_uris() -> None:
    playlist = media(LIVE)
    assert playlist.target_duration == 2.0
    assert not playlist.ended
    assert [(s.sequence, s.uri, s.duration) for s in playlist.segments] == [
        (41, "https://cdn.example/radio/seg41.ts", 2.0),
        (42, "https://cdn.example/radio/seg42.ts", 1.96),
        (43, "https://other.example/seg43.ts", 2.0),
        (44, "https://cdn.example/radio/seg44.ts?token=a,b", 2.04),
    ]


def test_a_live_playlist_is_followed_from_three_segments_before_its_end_a_recording_from_its_start() -> None:
    assert media(LIVE).live_start() == 42
    ended = media(LIVE + "#EXT-X-ENDLIST\n")
    assert ended.ended
    assert ended.live_start() == 41
    short = media("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n")
    assert (short.live_start(), short.target_duration) == (0, 6.0)
    assert media("#EXTM3U\n#EXT-X-TARGETDURATION:4\n").live_start() == 0  # nothing written yet


def test_a_master_playlist_follows_its_least_audio_only_variant() -> None:
    playlist = master(
        """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS="avc1.4d401f,mp4a.40.2",RESOLUTION=640x360
video/low.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS="mp4a.40.2"
audio/hi.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.5"
audio/lo.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=32000
unknown.m3u8
"""
    )
    assert [variant.audio_only for variant in playlist.variants] == [False, True, True, False]
    assert pick_variant(playlist) == "https://cdn.example/radio/audio/lo.m3u8"


def test_without_an_audio_only_variant_an_audio_rendition_else_the_least_variant() -> None:
    renditions = master(
        """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="Deutsch",DEFAULT=NO,URI="de.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",DEFAULT=YES,URI="en.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",URI="subs.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.4d401f,mp4a.40.2",AUDIO="aac"
video.m3u8
"""
    )
    assert pick_variant(renditions) == "https://cdn.example/radio/en.m3u8"
    videos = master(
        """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS="avc1.640028,mp4a.40.2"
hd.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS="avc1.42e00a,mp4a.40.2"
sd.m3u8
"""
    )
    assert pick_variant(videos) == "https://cdn.example/radio/sd.m3u8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html>not here</html>", "not an HLS playlist"),
        ("", "not an HLS playlist"),
        ('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:2,\na.ts\n', "encrypted"),
        ('#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\na.m4s\n', "fragmented MP4"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:soon\n", "malformed #EXT-X-TARGETDURATION: 'soon'"),
        ("#EXTM3U\n#EXTINF:inf,\na.ts\n", "malformed #EXTINF"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "names no stream"),
    ],
)
def test_what_cannot_be_followed_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        parse_playlist(text, BASE)


def test_an_unencrypted_key_tag_is_no_refusal() -> None:
    assert media("#EXTM3U\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:2,\na.ts\n").segments


@pytest.mark.parametrize(
    ("content_type", "first", "expected"),
    [
        ("application/vnd.apple.mpegurl", b"", True),
        ("audio/x-mpegURL; charset=utf-8", b"", True),
        ("text/plain", b"\xef\xbb\xbf#EXTM3U\n#EXT-X-VERSION:3", True),
        ("audio/mpeg", b"ID3\x04\x00", False),
        (None, b"\xff\xfb\x90\x64", False),
    ],
)
def test_a_playlist_is_told_from_audio_by_its_type_or_its_first_line(
    content_type: str | None, first: bytes, expected: bool
) -> None:
    assert looks_like_playlist(content_type, first) is expected

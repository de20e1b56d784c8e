"""Following a live session's stream URL: an endless HTTP response (Icecast, Shoutcast: MP3, AAC, Ogg) or an
HLS playlist that grows, fetched by a thread beside the session's :class:`~cesar_worker.live_runner.LiveRun`
and stored as the session's audio chunks (:meth:`JobStore.append_live_audio`, as the API stores a client's),
so the recording, the final pass, a takeover by another worker and the audio download work as for any
session.

- **Every connection is vetted.** All requests go through :mod:`cesar_worker.egress`: each URL (the stream,
  each redirect, each playlist reload, each HLS segment) is checked before it is fetched, and each
  connection against the address it reaches. A refused URL ends the session in ``error``, naming it. The
  URL is never handed to FFmpeg, which would open it without those checks: FFmpeg only decodes the bytes.
- **A drop is reconnected.** A connection closed or broken, a read that stalls, an HTTP error: the stream
  is fetched again after a short wait that doubles (:class:`Backoff`) for at most the session's idle time
  (``CESAR_LIVE_IDLE_SECONDS``); then the session ends ``idle`` with what was heard. Each drop is a gap of the
  session (:meth:`JobStore.set_live_gaps`): where in its audio, how long, why; so is the time a session
  waited for another worker after its own was lost, since the stream went on meanwhile.
- **Ends.** An HLS playlist with ``#EXT-X-ENDLIST`` ends the session once its last segment is stored
  (``stream_end``), and so does a response whose declared length was all received (a file, not a stream).
  A session that takes no more audio (its maximum length, a cancel) stops the thread at its next write;
  :meth:`StreamFollower.stop` within a quarter of a second (the egress guard's tick).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urljoin, urlsplit

import httpx

from cesar_common.db.records import JobRecord, LiveEnd
from cesar_common.db.store import JobStore
from cesar_common.errors import CesarError, DownloadError, URLRefusedError
from cesar_common.settings import Settings
from cesar_common.urlpolicy import validate_url
from cesar_worker import egress, hls

__all__ = ["Backoff", "StreamFollower"]

log = logging.getLogger("cesar.worker.live")

#: the audio gathered before it is stored, as the API gathers a client's (a few writes a second)
APPEND_SECONDS = 0.25
APPEND_BYTES = 64 * 1024
#: the longest a connection or a read waits on a silent server before the stream counts as dropped
TIMEOUT_SECONDS = 10.0
MAX_PLAYLIST_BYTES = 1024 * 1024
#: an HLS segment is a few seconds of audio (of video too, at worst): more is no segment
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: the waits between reconnection tries: the first, doubled after each failed try up to the last
FIRST_WAIT_SECONDS = 0.5
MAX_WAIT_SECONDS = 4.0
#: a gap's place is settled once the session has read this many chunks after it (about a second)
SETTLE_CHUNKS = 4
#: how long stop() waits for the thread: a guard's tick to notice, and the last write of the gaps
STOP_WAIT_SECONDS = 5 * egress.TICK


class Backoff:
    """The waits between tries to reconnect a dropped stream: :data:`FIRST_WAIT_SECONDS`, doubled after each
    failed try up to :data:`MAX_WAIT_SECONDS`, for ``budget`` seconds since the drop at most (a try that
    would start later is not made: the stream is given up). ``clock`` is a seam for the tests."""

    def __init__(self, budget: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._since: float | None = None
        self._wait = FIRST_WAIT_SECONDS

    def next_wait(self) -> float | None:
        """How long to wait before the next try (the first call starts the count); None: give up."""
        now = self._clock()
        if self._since is None:
            self._since = now
        wait = self._wait
        if now - self._since + wait >= self.budget:
            return None
        self._wait = min(self._wait * 2, MAX_WAIT_SECONDS)
        return wait

    def reset(self) -> None:
        """The stream is back: the next drop starts from the first wait again."""
        self._since = None
        self._wait = FIRST_WAIT_SECONDS


class _Drop(Exception):
    """The stream stopped coming; ``refusal``: the error it is when nothing was ever heard (a 404 at the
    first connection is a wrong URL, not a drop)."""

    def __init__(self, reason: str, refusal: CesarError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


class _Over(Exception):
    """The session takes no more audio (it ended: a maximum length, the stream's end, an idle limit)."""


@dataclass
class _Outage:
    """A drop not yet over: the gap it will be."""

    index: int  # its place in the gaps
    started: float  # time.monotonic()
    before: float  # seconds it had already lasted when this worker began (a takeover)
    reason: str
    missed: int = 0  # HLS segments gone from the playlist before they could be fetched


class _Places:
    """Where in the session's audio a gap falls: after so many of its bytes, in seconds as the session
    decodes them (its seconds decoded per byte it fed its decoder: exact for a constant bitrate, about right
    for any). The session decodes on threads of its own and a decoder holds some bytes back, so a place is
    settled once the session has read a few chunks past it; until then it is an estimate."""

    def __init__(self, heard: Callable[[], tuple[int, float]], chunks: int, audio_bytes: int) -> None:
        self._heard = heard
        self._stored = {chunks: audio_bytes}  # the bytes stored in the first n chunks, n from here on
        self._chunks = chunks
        self._pending: dict[int, tuple[int, int]] = {}  # gap index -> (chunks, bytes) before it

    def stored(self, chunks: int, audio_bytes: int) -> None:
        self._stored[chunks] = audio_bytes
        self._chunks = chunks

    def add(self, index: int) -> float:
        """A gap after everything stored so far: its place, estimated for now."""
        offset = self._stored[self._chunks]
        self._pending[index] = (self._chunks, offset)
        return self._seconds(offset)[0]

    def settle(self, gaps: list[dict[str, object]], *, final: bool = False) -> bool:
        """Place the gaps the session has heard far enough past (``final``: all of them); whether any
        moved."""
        read = self._heard()[0]
        moved = False
        for index, (chunks, offset) in list(self._pending.items()):
            at, known = self._seconds(offset)
            if known and (final or read >= chunks + SETTLE_CHUNKS):
                gaps[index]["at"] = at
                del self._pending[index]
                moved = True
        return moved

    def _seconds(self, offset: int) -> tuple[float, bool]:
        read, seconds = self._heard()
        for passed in [count for count in self._stored if count < min(read, self._chunks)]:
            del self._stored[passed]  # the session only reads on
        fed = self._stored.get(read)
        if not fed or seconds <= 0:
            return round(seconds, 3), False
        return round(seconds * offset / fed, 3), True


class StreamFollower:
    """The thread that fetches one session's stream URL into its audio (see the module)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        job: JobRecord,
        *,
        heard: Callable[[], tuple[int, float]],
    ) -> None:
        """``heard()``: the session's chunks read and seconds of audio decoded so far (a gap's place)."""
        assert job.source_url is not None
        self.store = store
        self.job_id = job.id
        self.url = job.source_url
        self._heard = heard
        budget = settings.live_idle_seconds
        self._backoff = Backoff(budget)
        self._stop = threading.Event()
        self._guard = egress.Guard(
            allow_private=settings.allow_private_urls,
            allowed=settings.allow_private_networks,
            should_stop=self._stop.is_set,
        )
        wait = min(TIMEOUT_SECONDS, max(budget / 2, 1.0))
        self._timeout = httpx.Timeout(wait)
        self._error: CesarError | None = None
        self._thread: threading.Thread | None = None
        self._buffer = bytearray()
        self._gathered_since = time.monotonic()
        self._chunks = 0
        self._places: _Places | None = None
        self._gaps: list[dict[str, object]] = []
        self._outage: _Outage | None = None
        self._next_segment: int | None = None  # an HLS stream's next media sequence number

    # --- the session's side -----------------------------------------------------------------------
    def start(self) -> None:
        """Begin following (the idle time starts now); a session that was followed before (a takeover) has
        a gap from its last audio to the first audio this worker stores."""
        downtime = self.store.restart_live_idle(self.job_id)
        state = self.store.live_state(self.job_id)
        assert state is not None
        self._chunks = state.chunks
        self._places = _Places(self._heard, state.chunks, state.audio_bytes)
        self._gaps = [dict(gap) for gap in state.gaps]
        if state.chunks:
            reason = "the worker following the stream was lost or stopped; another one reconnected"
            self._begin_outage(reason, before=downtime)
        self._thread = threading.Thread(target=self._run, name="cesar-live-url", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise what ended the following for good (a refused URL, a stream that cannot be followed)."""
        if self._error is not None:
            raise self._error

    def stop(self) -> bool:
        """Stop fetching (within a tick of the egress guard) and wait for the thread; whether it ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(STOP_WAIT_SECONDS)
        return not self._thread.is_alive()

    # --- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with egress.client(self._guard, timeout=self._timeout) as client:
                while True:
                    try:
                        self._follow(client)
                    except _Drop as drop:
                        self._dropped(drop)
                    except httpx.RequestError as exc:
                        self._dropped(_Drop(_transport_reason(exc, self._host(self.url))))
        except (egress.Stopped, _Over):
            pass
        except CesarError as exc:
            self._error = exc
        except Exception as exc:
            log.exception("live session %s: following %s failed", self.job_id, self.url)
            self._error = CesarError(f"internal error following the stream: {type(exc).__name__}: {exc}")
        finally:
            self._last_gaps()

    def _follow(self, client: httpx.Client) -> NoReturn:
        """The stream until it ends (_Over) or drops (_Drop, httpx.RequestError)."""
        with self._get(client, self.url, "the stream URL") as (response, url):
            pieces = response.iter_bytes()
            first = next(pieces, b"")
            if not hls.looks_like_playlist(response.headers.get("content-type"), first):
                self._endless(response, first, pieces)
            text = self._playlist_text(first, pieces, url)
        self._follow_hls(client, hls.parse_playlist(text, url), url)

    def _endless(self, response: httpx.Response, first: bytes, pieces: Iterator[bytes]) -> NoReturn:
        """An Icecast-like stream: its bytes as they come. Only a response that declared its length and
        sent all of it ends the session (a file); any other end is a drop."""
        received = len(first)
        self._feed(first)
        try:
            for piece in pieces:
                received += len(piece)
                self._feed(piece)
        finally:  # what came before a drop is audio of the session's
            self._flush()
        length = response.headers.get("content-length", "")
        if length.isdigit() and received >= int(length) > 0:
            self._end(LiveEnd.STREAM_END)
        raise _Drop(f"{self._host(self.url)} closed the stream")

    # --- HLS --------------------------------------------------------------------------------------
    def _follow_hls(
        self, client: httpx.Client, playlist: hls.MediaPlaylist | hls.MasterPlaylist, url: str
    ) -> NoReturn:
        if isinstance(playlist, hls.MasterPlaylist):
            url = hls.pick_variant(playlist)
            playlist = self._media_playlist(client, url)
        while True:
            fresh = self._take_segments(client, playlist)
            if playlist.ended:
                self._flush()
                self._end(LiveEnd.STREAM_END)
            # RFC 8216 6.3.4: reload after a target duration, half of one when nothing was new
            self._wait(playlist.target_duration if fresh else playlist.target_duration / 2)
            playlist = self._media_playlist(client, url)

    def _take_segments(self, client: httpx.Client, playlist: hls.MediaPlaylist) -> bool:
        """Store the segments after the last one stored; whether there were any."""
        segments = playlist.segments
        if self._next_segment is None:
            self._next_segment = playlist.live_start()
        elif segments and segments[-1].sequence < self._next_segment - 1:
            log.info("live session %s: the playlist numbers its segments anew", self.job_id)
            self._next_segment = playlist.live_start()
        if segments and segments[0].sequence > self._next_segment:
            self._missed(segments[0].sequence - self._next_segment, playlist.target_duration)
            self._next_segment = segments[0].sequence
        fresh = [segment for segment in segments if segment.sequence >= self._next_segment]
        for segment in fresh:
            # stored whole: a segment that breaks off is fetched again, not stored twice in part
            self._buffer += self._segment(client, segment.uri)
            self._flush()
            self._next_segment = segment.sequence + 1
        return bool(fresh)

    def _segment(self, client: httpx.Client, uri: str) -> bytes:
        body = bytearray()
        with self._get(client, uri, "the stream's segment") as (response, _url):
            for piece in response.iter_bytes():
                body += piece
                if len(body) > MAX_SEGMENT_BYTES:
                    raise DownloadError(
                        f"the stream's segment {uri} is larger than {MAX_SEGMENT_BYTES // 2**20} MiB"
                    )
        return bytes(body)

    def _media_playlist(self, client: httpx.Client, url: str) -> hls.MediaPlaylist:
        with self._get(client, url, "the stream's playlist") as (response, final):
            pieces = response.iter_bytes()
            text = self._playlist_text(next(pieces, b""), pieces, final)
        playlist = hls.parse_playlist(text, final)
        if not isinstance(playlist, hls.MediaPlaylist):
            raise DownloadError(f"the HLS variant {url} is itself a master playlist: Cesar cannot follow it")
        return playlist

    def _playlist_text(self, first: bytes, pieces: Iterator[bytes], url: str) -> str:
        body = bytearray(first)
        for piece in pieces:
            body += piece
            if len(body) > MAX_PLAYLIST_BYTES:
                raise DownloadError(f"the HLS playlist {url} is larger than {MAX_PLAYLIST_BYTES // 1024} KiB")
        return body.decode("utf-8", errors="replace")

    def _missed(self, segments: int, target: float) -> None:
        """Segments gone from a live playlist before they were fetched: audio the session lacks."""
        if self._outage is not None:
            self._outage.missed += segments
            return
        assert self._places is not None
        reason = f"{segments} segments left the playlist before they could be fetched"
        at = self._places.add(len(self._gaps))
        self._gaps.append({"at": at, "seconds": round(segments * target, 3), "reason": reason})
        self.store.set_live_gaps(self.job_id, self._gaps)

    # --- requests ---------------------------------------------------------------------------------
    @contextmanager
    def _get(self, client: httpx.Client, url: str, what: str) -> Iterator[tuple[httpx.Response, str]]:
        """``url``'s response once past its redirects (each checked before it is fetched); a refused URL
        raises URLRefusedError naming ``what`` it was, an HTTP error status is a drop."""
        current = self._checked(url, what)
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                with client.stream("GET", current, headers={"Accept": "*/*"}) as response:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        current = self._checked(urljoin(current, location.strip()), what)
                        continue
                    if response.status_code >= 400:
                        raise self._http_error(response, current, what)
                    yield response, current
                    return
            except URLRefusedError as exc:  # the address a connection reached (egress)
                raise _refused(what, current, exc) from exc
        raise DownloadError(f"{what} {url} redirected more than {MAX_REDIRECTS} times")

    def _checked(self, url: str, what: str) -> str:
        guard = self._guard
        try:
            httpx.URL(url)  # what the client would refuse to send
            return validate_url(url, allow_private=guard.allow_private, resolve=False, allowed=guard.allowed)
        except httpx.InvalidURL as exc:
            raise URLRefusedError(f"{what} {url} is not a URL that can be fetched ({exc})") from exc
        except URLRefusedError as exc:
            raise _refused(what, url, exc) from exc

    def _http_error(self, response: httpx.Response, url: str, what: str) -> _Drop:
        status = f"{response.status_code} {response.reason_phrase}".strip()
        reason = f"{what} answered {status} ({self._host(url)})"
        refusal = DownloadError(f"{what} {url} answered {status}") if response.status_code < 500 else None
        return _Drop(reason, refusal)

    @staticmethod
    def _host(url: str) -> str:
        return urlsplit(url).hostname or url

    # --- audio in ---------------------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= APPEND_BYTES or time.monotonic() - self._gathered_since >= APPEND_SECONDS:
            self._flush()

    def _flush(self) -> None:
        """Store what was gathered (the first audio after a drop ends it); _Over when the session takes no
        more."""
        if not self._buffer:
            return
        if self._outage is not None:
            self._end_outage()
        data, self._buffer = bytes(self._buffer), bytearray()
        self._gathered_since = time.monotonic()
        stored = self.store.append_live_audio(self.job_id, data)
        if stored is None:
            raise _Over
        self._chunks += 1
        self._backoff.reset()
        assert self._places is not None
        self._places.stored(self._chunks, stored)
        if self._places.settle(self._gaps):
            self.store.set_live_gaps(self.job_id, self._gaps)

    def _end(self, reason: LiveEnd) -> NoReturn:
        self.store.end_live_audio(self.job_id, reason)
        raise _Over

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise egress.Stopped

    # --- drops and gaps ---------------------------------------------------------------------------
    def _dropped(self, drop: _Drop) -> None:
        """Wait before the next try, or give the stream up: the session ends ``idle`` with what it heard,
        or in ``error`` when nothing was ever heard."""
        heard = self._chunks > 0
        if not heard and drop.refusal is not None:
            raise drop.refusal
        if heard and self._outage is None:
            self._begin_outage(drop.reason)
        wait = self._backoff.next_wait()
        if self._outage is not None:
            self._write_outage()
        if wait is None:
            if not heard:
                raise DownloadError(
                    f"could not follow the stream at {self._host(self.url)}: {drop.reason} (tried for "
                    f"{self._backoff.budget:g} s, CESAR_LIVE_IDLE_SECONDS)"
                )
            self._end_outage()
            self._end(LiveEnd.IDLE)
        log.info("live session %s: %s; trying again in %.1f s", self.job_id, drop.reason, wait)
        self._wait(wait)

    def _begin_outage(self, reason: str, *, before: float = 0.0) -> None:
        assert self._places is not None
        self._outage = _Outage(len(self._gaps), time.monotonic(), before, reason)
        self._gaps.append({"at": self._places.add(self._outage.index)})
        self._write_outage()

    def _write_outage(self) -> None:
        """The drop's gap as long as it lasted so far."""
        outage = self._outage
        assert outage is not None
        reason = outage.reason
        if outage.missed:
            reason += f" ({outage.missed} segments left the playlist meanwhile)"
        gap = self._gaps[outage.index]
        gap.update(seconds=round(outage.before + time.monotonic() - outage.started, 3), reason=reason)
        self.store.set_live_gaps(self.job_id, self._gaps)

    def _end_outage(self) -> None:
        self._write_outage()
        self._outage = None

    def _last_gaps(self) -> None:
        """The following ends: a drop still going on is a gap as long as it got, and every gap's place is
        settled as well as the session can tell now."""
        try:
            if self._outage is not None:
                self._end_outage()
            if self._places is not None and self._places.settle(self._gaps, final=True):
                self.store.set_live_gaps(self.job_id, self._gaps)
        except CesarError as exc:
            log.warning("live session %s: could not record its gaps: %s", self.job_id, exc)


def _refused(what: str, url: str, exc: URLRefusedError) -> URLRefusedError:
    reason = str(exc).removeprefix("URL refused: ")
    return URLRefusedError(f"{what} {url} was refused: {reason}")


def _transport_reason(exc: httpx.RequestError, host: str) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"{host} did not answer in time"
    if isinstance(exc, httpx.TimeoutException):
        return f"{host} sent nothing for too long"
    if isinstance(exc, httpx.ConnectError):  # "[Errno 111] cannot connect to ...: Connection refused"
        detail = str(exc).rsplit(": ", 1)[-1].split("]", 1)[-1].strip()
        return f"could not connect to {host} ({detail or type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{host} broke off the stream ({exc})"
    return f"the connection to {host} failed ({exc or type(exc).__name__})"

"""Issue 27: live transcription (``GET /live``) against file transcription of the same audio, in one run.

One real `cesar serve` (``--workers``, default 1; ``CESAR_LIVE_SESSIONS`` = ``--live-sessions``, by default
the largest of ``--sessions``: slots left idle cost nothing, and one server spares a model load per N) on a
fresh SQLite file or a fresh PostgreSQL database, tiny.en on the CPU:

1. **file**: ``speech_en_long.flac`` (the 69.7 s story) uploaded to ``POST /transcribe`` with
   ``word_timestamps=true``, waited for, its JSON transcript read: every word's end time in the file;
2. **latency session**: the same audio as one live session at speaking pace: 16 kHz int16 little-endian PCM
   in frames of 100 ms, frame ``k`` sent when the monotonic clock reaches ``t0 + k * 0.1`` (``t0``: the
   moment the first frame is sent, the session's audio start; a microphone would send each frame 0.1 s
   after its first sample, so a real client sees up to 0.1 s more than measured here). Every event is
   stamped with its arrival (monotonic, relative to ``t0``):

   * *confirmed latency* of a word = its ``segment`` event's arrival - the word's own end (session time);
     also against the end of the file word it aligns with (the same word, once normalised, ending within
     2 s: the story is said twice, so text alone could pair one telling with the other);
   * *tentative latency* of a word = the first arrival of a ``tentative`` event whose text shows it - its
     end. Approximate alignment: a tentative text is the words that follow those confirmed so far, so its
     ``j``-th word is taken for confirmed word number ``confirmed_so_far + j`` and counts only when the two
     are the same word once normalised (a hypothesis that later changed is not the word). A word confirmed
     without ever being shown tentative (the last pass after ``stop`` confirms what is left at once) is
     first seen with its segment: such words are counted and shown;
   * WER of the session's final transcript (``GET /jobs/{id}/transcript?format=txt``) and of the file's, both
     against the fixture's reference text (bench/wer.py);
3. **concurrency**: for each N of ``--sessions``, N sessions at once at speaking pace for ``--seconds``,
   looping the story's audio. A session's *backlog* = audio sent so far - the end of the last confirmed
   word received, sampled every second while sending (not only at each ``segment``: a session falling behind
   sends few); it *keeps up* when the mean backlog of its last window (a minute, or a third of
   the run when shorter) is no more than :data:`KEEP_UP_GROWTH` above that of its first window. Also shown:
   the confirmed latency under that load, the *drain* (``stop`` to ``final``), and the server's CPU seconds
   per second of audio;
4. **database writes** per session-second: the stream's stored chunks (``live_sessions.chunks``, exact: one
   write transaction each) plus the worker's reports, *estimated* as the moments the client saw something
   change (tentative and segment events, those within 20 ms counted once: the API relays coalesce, so it is
   a lower bound) plus the 4 of a session's start and end; on PostgreSQL also measured: the database's
   ``pg_stat_database.xact_commit`` (every committed transaction: the API and the worker read in autocommit,
   so each read statement counts too), the cluster's transaction-id counter (write transactions only, but
   every database's: the other databases' commits in the same time are shown) and the rows written
   (``pg_stat_user_tables``); each minus the rate of an idle baseline (``--baseline-seconds``) over the
   same time, and read 11 s after the session ends (PostgreSQL flushes a backend's statistics up to 10 s
   late).

Beside them, for context: what one decoding pass costs here (the same decoder the worker builds, in this
process, with the server idle): a word is confirmed by the second pass that hears it, so a pass's time counts
about twice in the latency.

Targets (latency session): confirmed latency median <= 2.0 s and p95 <= 4.0 s; tentative median <= 1.0 s;
live WER <= 0.20 and within 0.05 of the file's. Exit status 0 when all are met.

    .venv/bin/python bench/live.py [--db sqlite|postgres] [--sessions 1 2 3 4] [--seconds 300] [--quick]
        [--workers 1] [--live-sessions N] [--postgres-url URL] [--baseline-seconds 30] [--logs DIR]

``--quick``: ``--sessions 1 2 --seconds 90`` (with the one 70 s latency session), to try it out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from serving import AUDIO_DIR, Client, Serve, running_serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wer import reference_from_readme, word_error_rate

from cesar_common.db.connect import normalize_url
from cesar_common.transcription.audio import SAMPLE_RATE, decode_samples

STORY = AUDIO_DIR / "speech_en_long.flac"
REFERENCE = reference_from_readme((AUDIO_DIR / "README.md").read_text(), "speech_en_long")
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODEL = "tiny.en"
FRAME_SECONDS = 0.1
FRAME_SAMPLES = round(FRAME_SECONDS * SAMPLE_RATE)
#: a session keeps up when its backlog grows by no more than this from its first window to its last
KEEP_UP_GROWTH = 1.0
#: a live word and a file word align when their ends are at most this far apart (and they are spelled alike)
ALIGN_SECONDS = 2.0
#: PostgreSQL flushes an idle backend's statistics up to 10 s late (PGSTAT_IDLE_INTERVAL)
PG_STATS_SETTLE = 11.0
#: the buffer lengths whose decoding pass is timed (the worker trims its buffer at 15 s, at most 30 s)
PASS_BUFFERS = (2.0, 5.0, 10.0, 15.0)
#: a session's writes besides audio and reports: opened, claimed, audio ended, completed
FIXED_WRITES = 4

TARGET_MEDIAN = 2.0
TARGET_P95 = 4.0
TARGET_TENTATIVE = 1.0
TARGET_WER = 0.20
TARGET_WER_MARGIN = 0.05

_NOT_WORD = re.compile(r"[\W_]+")


# --- a live session, client side ------------------------------------------------------------------
@dataclass
class SessionLog:
    """What one session's client sent and received; times in seconds from ``t0`` (the first frame)."""

    audio_seconds: float = 0.0
    session_id: str | None = None
    t0: float = 0.0
    stop_at: float = 0.0
    final_at: float | None = None
    final_job: dict[str, Any] | None = None
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None
    close_code: int | None = None

    @property
    def drain(self) -> float | None:
        return None if self.final_at is None else self.final_at - self.stop_at


def run_session(ws_url: str, pcm: bytes, *, timeout: float = 600) -> SessionLog:
    """One live session: ``pcm`` (16 kHz int16 LE) at speaking pace in 100 ms frames, then stop; every
    event until the server closes."""
    log = SessionLog(audio_seconds=len(pcm) / 2 / SAMPLE_RATE)
    frame_bytes = FRAME_SAMPLES * 2
    frames = [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]
    start = {
        "type": "start",
        "model": MODEL,
        "word_timestamps": True,
        "audio": {"format": "pcm_s16le", "sample_rate": SAMPLE_RATE},
    }
    raw: list[tuple[float, str]] = []
    with connect(ws_url, open_timeout=30, close_timeout=10, max_size=None) as ws:
        ws.send(json.dumps(start))
        first = json.loads(ws.recv(timeout=30))
        if first.get("type") != "session":
            log.error = f"refused: {first}"
            return log
        log.session_id = first["session_id"]

        def receive() -> None:
            try:
                while True:
                    message = ws.recv()
                    raw.append((time.monotonic(), str(message)))
            except ConnectionClosed as exc:
                log.close_code = exc.rcvd.code if exc.rcvd is not None else None

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        t0 = time.monotonic()
        for index, frame in enumerate(frames):
            delay = t0 + index * FRAME_SECONDS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                ws.send(frame)
            except ConnectionClosed:
                log.error = f"closed while sending frame {index}"
                break
        with contextlib.suppress(ConnectionClosed):
            ws.send(json.dumps({"type": "stop"}))
        stop_at = time.monotonic()
        receiver.join(timeout)
        if receiver.is_alive():
            log.error = f"no final within {timeout:.0f} s of stop"
    log.t0, log.stop_at = t0, stop_at - t0
    for arrival, text in raw:
        event = json.loads(text)
        log.events.append((arrival - t0, event))
        if event.get("type") == "final":
            log.final_at, log.final_job = arrival - t0, event.get("job")
        elif event.get("type") == "error":
            log.error = f"error event: {event.get('code')}: {event.get('message')}"
    return log


def run_sessions(ws_url: str, pcm: bytes, count: int) -> list[SessionLog]:
    """``count`` sessions of ``pcm`` at once, each on its own thread."""
    logs: list[SessionLog | None] = [None] * count
    failures: list[BaseException] = []

    def one(index: int) -> None:
        try:
            logs[index] = run_session(ws_url, pcm)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a live session failed: {failures[0]!r}")
    return [log for log in logs if log is not None]


# --- figures from a session ------------------------------------------------------------------------
@dataclass
class Confirmed:
    word: str
    norm: str
    start: float
    end: float
    arrival: float


def norm(word: str) -> str:
    return _NOT_WORD.sub("", word.lower())


def confirmed_words(log: SessionLog) -> list[Confirmed]:
    words = []
    for arrival, event in log.events:
        if event.get("type") == "segment":
            for word in event.get("words") or ():
                text = str(word["word"])
                words.append(Confirmed(text, norm(text), float(word["start"]), float(word["end"]), arrival))
    return [word for word in words if word.norm]


def tentative_first_seen(log: SessionLog, words: Sequence[Confirmed]) -> tuple[list[float], int]:
    """Each confirmed word's first sighting (see the module's docstring); and how many were never shown
    tentative (their sighting is their segment's arrival)."""
    seen: list[float | None] = [None] * len(words)
    so_far = 0
    for arrival, event in log.events:
        kind = event.get("type")
        if kind == "segment":
            so_far += sum(1 for word in event.get("words") or () if norm(str(word["word"])))
        elif kind == "tentative":
            shown = [n for n in (norm(token) for token in str(event.get("text") or "").split()) if n]
            for offset, token in enumerate(shown):
                index = so_far + offset
                if index < len(words) and seen[index] is None and words[index].norm == token:
                    seen[index] = arrival
    never = sum(1 for value in seen if value is None)
    return [word.arrival if value is None else value for word, value in zip(words, seen, strict=True)], never


def file_alignment(
    live: Sequence[Confirmed], file_words: Sequence[tuple[str, float]], period: float
) -> list[tuple[Confirmed, float]]:
    """(live word, the end of the file word it aligns with), the file's words repeated every ``period``
    seconds as often as the live audio looped. The story is said twice, so a text alignment alone
    (SequenceMatcher) may pair one telling with the other: each live word goes, in order, to the nearest
    file word spelled the same (normalised) whose end is within :data:`ALIGN_SECONDS` of its own."""
    if not live or not file_words:
        return []
    loops = max(1, math.ceil((live[-1].end + 1) / period))
    by_word: dict[str, list[tuple[int, float]]] = {}
    for index, (text, end) in enumerate(
        (text, end + k * period) for k in range(loops) for text, end in file_words
    ):
        by_word.setdefault(text, []).append((index, end))
    pairs = []
    last = -1
    for word in live:
        candidates = [
            (abs(end - word.end), index, end)
            for index, end in by_word.get(word.norm, ())
            if index > last and abs(end - word.end) <= ALIGN_SECONDS
        ]
        if candidates:
            _, last, end = min(candidates)
            pairs.append((word, end))
    return pairs


def backlog(log: SessionLog) -> list[tuple[float, float]]:
    """(t, audio sent by t - end of the last confirmed word that had arrived by t), every second while
    audio was being sent. Sampled on a clock rather than at each segment: a session falling behind sends
    few segments, and sampling at them would hide the stretches without any."""
    frames = round(log.audio_seconds / FRAME_SECONDS)
    arrivals = sorted(
        (arrival, float(event.get("end") or 0.0))
        for arrival, event in log.events
        if event.get("type") == "segment"
    )
    points = []
    confirmed_end, index = 0.0, 0
    for t in np.arange(1.0, log.stop_at, 1.0):
        while index < len(arrivals) and arrivals[index][0] <= t:
            confirmed_end = max(confirmed_end, arrivals[index][1])
            index += 1
        sent = min(math.floor(t / FRAME_SECONDS) + 1, frames) * FRAME_SECONDS
        points.append((float(t), sent - confirmed_end))
    return points


def window_means(points: Sequence[tuple[float, float]], seconds: float) -> tuple[float, float, float]:
    """Mean backlog over the first and the last window (a minute, or a third of the run), and the width."""
    width = min(60.0, seconds / 3)
    first = [b for t, b in points if t < width] or [math.nan]
    last = [b for t, b in points if t >= seconds - width] or [math.nan]
    return statistics.fmean(first), statistics.fmean(last), width


def change_moments(log: SessionLog) -> int:
    """Distinct moments the client saw the session change (tentative or segment events; those within 20 ms
    of each other are one relay read, i.e. one worker report at most)."""
    times = sorted(t for t, event in log.events if event.get("type") in ("tentative", "segment"))
    moments, last = 0, -1.0
    for t in times:
        if t - last > 0.02:
            moments += 1
        last = t
    return moments


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


# --- the server and its database -------------------------------------------------------------------
def cpu_seconds(serve: Serve) -> float:
    """CPU time (user + system) of serve and every process under it."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        family = [psutil.Process(serve.process.pid)]
        family += family[0].children(recursive=True)
        for process in family:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


class Counters:
    """The database's write counters: ``live_sessions.chunks`` on both backends; on PostgreSQL also
    xact_commit, the cluster's next transaction id, rows written, and the other databases' commits."""

    def __init__(self, db_url: str, postgres_admin: str | None, database: str | None) -> None:
        self.db_url = db_url
        self.admin = postgres_admin
        self.database = database

    @property
    def postgres(self) -> bool:
        return self.admin is not None

    def chunks(self, session_ids: Sequence[str]) -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(normalize_url(self.db_url))
        try:
            with engine.connect() as conn:
                total = 0
                for session_id in session_ids:
                    value = conn.execute(
                        text("SELECT chunks FROM live_sessions WHERE job_id = :id"), {"id": session_id}
                    ).scalar()
                    total += int(value or 0)
                return total
        finally:
            engine.dispose()

    def snapshot(self) -> dict[str, float]:
        if not self.postgres:
            return {"t": time.monotonic()}
        import psycopg

        assert self.admin is not None and self.database is not None
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = %s),"
                " (SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database"
                "   WHERE datname IS DISTINCT FROM %s),"
                " pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
                (self.database, self.database),
            ).fetchone()
        ours = normalize_url(self.db_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(ours, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
            ).fetchone()
        assert row is not None and rows is not None
        return {
            "t": time.monotonic(),
            "xact_commit": float(row[0] or 0),
            "others": float(row[1] or 0),
            "xid": float(row[2]),
            "rows": float(rows[0] or 0),
        }


@contextlib.contextmanager
def database(kind: str, postgres_url: str, tmp: Path) -> Iterator[Counters]:
    if kind == "sqlite":
        yield Counters(f"sqlite:///{tmp / 'cesar.db'}", None, None)
        return
    import psycopg
    from psycopg import sql

    admin = normalize_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"cesar_bench_live_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise SystemExit(f"PostgreSQL at {postgres_url}: {exc}") from exc
    try:
        url = normalize_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        yield Counters(url, admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class Writes:
    seconds: float  # session-seconds of audio (sessions x audio seconds)
    chunks: int
    reports: int  # estimated
    xact: float | None = None
    xid: float | None = None
    rows: float | None = None
    others: float | None = None

    def per_second(self, value: float | None) -> float | None:
        return None if value is None else value / self.seconds


def measured_writes(
    counters: Counters,
    logs: Sequence[SessionLog],
    before: dict[str, float],
    baseline: dict[str, float] | None,
) -> Writes:
    """The writes of ``logs`` (their sessions' chunks, the reports estimated; on PostgreSQL the counters
    since ``before``, minus the idle baseline's rates), over their session-seconds of audio."""
    ids = [log.session_id for log in logs if log.session_id]
    seconds = sum(log.audio_seconds for log in logs)
    writes = Writes(
        seconds=seconds,
        chunks=counters.chunks(ids),
        reports=sum(change_moments(log) + FIXED_WRITES for log in logs),
    )
    if counters.postgres:
        time.sleep(PG_STATS_SETTLE)
        after = counters.snapshot()
        span = after["t"] - before["t"]
        rate = baseline or {}
        for key in ("xact_commit", "xid", "rows"):
            delta = after[key] - before[key] - rate.get(key, 0.0) * span
            setattr(writes, "xact" if key == "xact_commit" else key, delta)
        writes.others = after["others"] - before["others"]  # as they were: is the xid count ours alone?
    return writes


def idle_baseline(counters: Counters, seconds: float) -> dict[str, float] | None:
    """Per-second rates of the counters with the server idle (PostgreSQL only)."""
    if not counters.postgres or seconds <= 0:
        return None
    time.sleep(PG_STATS_SETTLE)
    before = counters.snapshot()
    time.sleep(seconds)
    time.sleep(PG_STATS_SETTLE)
    after = counters.snapshot()
    span = after["t"] - before["t"]
    return {key: (after[key] - before[key]) / span for key in ("xact_commit", "xid", "rows", "others")}


# --- the run ---------------------------------------------------------------------------------------
def machine_line() -> str:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{model}, {os.cpu_count()} CPUs, load average {load}"


def story_pcm() -> tuple[np.ndarray, float]:
    samples = decode_samples(STORY)
    pcm = np.round(samples * 32768.0).clip(-32768, 32767).astype("<i2")
    return pcm, samples.size / SAMPLE_RATE


def looped(pcm: np.ndarray, seconds: float) -> bytes:
    """``seconds`` of the story's audio, looped, in whole frames."""
    frames = max(1, round(seconds / FRAME_SECONDS))
    return np.resize(pcm, frames * FRAME_SAMPLES).astype("<i2").tobytes()


def file_transcription(client: Client) -> tuple[str, list[tuple[str, float]], float]:
    """The story as a file: its text, its words (normalised, end), and its latency (created to completed)."""
    from datetime import datetime

    job_id = client.upload(STORY, word_timestamps="true", model=MODEL)
    job = client.wait_all([job_id], timeout=600)[job_id]
    if job["status"] != "completed":
        raise SystemExit(f"the file job {job['status']}: {job.get('error_message')}")
    document = json.loads(client.transcript(job_id, "json"))
    words = [
        (norm(str(word["word"])), float(word["end"]))
        for segment in document.get("segments") or ()
        for word in segment.get("words") or ()
        if norm(str(word["word"]))
    ]
    latency = (
        datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()
    return client.transcript(job_id, "txt"), words, latency


def pass_cost(pcm: np.ndarray, workers: int) -> dict[float, float]:
    """Median seconds of one decoding pass over the story's first ``B`` seconds, for a few ``B``: the
    worker's decoder (:func:`streaming.whisper_decoder`, beam 5, VAD, English) on the model the worker
    loads, with its threads (serve shares the cores among the workers)."""
    from cesar_common.settings import Settings
    from cesar_common.transcription import loading, streaming

    settings = Settings()
    threads = settings.threads or max(1, (os.cpu_count() or 1) // workers)
    loaded = loading.load_model(
        MODEL, device="cpu", compute_type=settings.compute_type, threads=threads, offline=True
    )
    decode = streaming.whisper_decoder(loaded, language="en")
    samples = pcm.astype(np.float32) / 32768.0
    costs = {}
    decode(samples[: 2 * SAMPLE_RATE], None)  # warm-up
    for seconds in PASS_BUFFERS:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            decode(samples[: round(seconds * SAMPLE_RATE)], None)
            times.append(time.perf_counter() - started)
        costs[seconds] = statistics.median(times)
    return costs


@dataclass
class Results:
    backend: str
    confirmed_median: float = math.nan
    confirmed_p95: float = math.nan
    file_median: float = math.nan
    file_p95: float = math.nan
    tentative_median: float = math.nan
    live_wer: float = math.nan  # the session's transcript (its final pass, CESAR_LIVE_FINAL_PASS)
    confirmed_wer: float = math.nan  # the segments confirmed live, as the client saw them
    file_wer: float = math.nan
    kept_up: int | None = None
    sweep: list[dict[str, Any]] = field(default_factory=list)
    writes: list[tuple[str, Writes]] = field(default_factory=list)
    pass_costs: dict[float, float] = field(default_factory=dict)
    door: list[float] = field(default_factory=list)  # /v1/realtime delta - /live segment, per segment
    realtime_wer: float = math.nan  # the realtime connection's completed turns


# --- /v1/realtime against /live, one session -------------------------------------------------------
def door_overhead(serve_url: str, story_seconds: float) -> tuple[list[float], float, int]:
    """The story at speaking pace through ``/v1/realtime`` (the `openai` client, server VAD), its session
    also followed by a native ``/live`` connection (``resume`` with the job's id, sending nothing): for each
    confirmed segment, its ``delta`` event's arrival minus the ``segment`` event's, both clocked here.
    Returns those differences, the WER of the completed turns, and how many turns there were."""
    import base64

    import av
    import openai

    resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
    with av.open(str(STORY)) as container:
        pcm = b"".join(
            bytes(out.planes[0])[: out.samples * 2]
            for frame in [*container.decode(audio=0), None]
            for out in resampler.resample(frame)
        )
    client = openai.OpenAI(api_key="unused", base_url=f"{serve_url}/v1", max_retries=0)
    deltas: list[tuple[float, str]] = []
    segments: list[tuple[float, str]] = []
    completed: list[str] = []
    started: list[float] = []
    job: dict[str, str] = {}

    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:

        def read_realtime() -> None:
            with contextlib.suppress(Exception):  # the connection closed
                for event in connection:
                    now = time.monotonic()
                    if event.type == "conversation.item.input_audio_transcription.delta":
                        deltas.append((now, str(event.delta).strip()))
                    elif event.type == "input_audio_buffer.speech_started":
                        started.append(now)
                    elif event.type == "conversation.item.input_audio_transcription.completed":
                        completed.append(event.transcript)
                    elif event.type == "session.updated" and getattr(event.session, "job_id", None):
                        job["id"] = str(getattr(event.session, "job_id", ""))

        def follow_native() -> None:
            ws = connect(serve_url.replace("http://", "ws://") + "/live", max_size=None, legacy=True)
            ws.send(json.dumps({"type": "resume", "session_id": job["id"], "last_segment": -1}))
            with contextlib.suppress(ConnectionClosed):
                for message in ws:
                    event = json.loads(message)
                    if event["type"] == "segment" and str(event["text"]).strip():
                        segments.append((time.monotonic(), str(event["text"]).strip()))

        threading.Thread(target=read_realtime, daemon=True).start()
        vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
        update: Any = {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": vad,
                    }
                },
            },
        }
        connection.send(update)
        frame = int(48000 * FRAME_SECONDS)
        t0 = time.monotonic()
        follower: threading.Thread | None = None
        for k, offset in enumerate(range(0, len(pcm), frame)):
            time.sleep(max(0.0, t0 + k * FRAME_SECONDS - time.monotonic()))
            connection.input_audio_buffer.append(
                audio=base64.b64encode(pcm[offset : offset + frame]).decode()
            )
            if follower is None and k == 2:
                connection.send(update)  # answered with the job's id, now that audio opened it
            if follower is None and "id" in job:
                follower = threading.Thread(target=follow_native, daemon=True)
                follower.start()
        connection.input_audio_buffer.append(audio=base64.b64encode(bytes(48000)).decode())
        deadline = time.monotonic() + 120
        # every turn heard has completed (the second of silence sent last ends the last one)
        while time.monotonic() < deadline and (
            len(deltas) < len(segments) or not started or len(completed) < len(started)
        ):
            time.sleep(0.2)
    pairs = [(d[0] - s[0]) for d, s in zip(deltas, segments, strict=False) if d[1] == s[1]]
    text = " ".join(completed)
    return pairs, word_error_rate(REFERENCE, text), len(completed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sessions", type=int, nargs="*", default=[1, 2, 3, 4], help="N concurrent, swept")
    parser.add_argument("--seconds", type=float, default=300.0, help="audio per concurrent session")
    parser.add_argument("--workers", default="1", help="cesar serve --workers")
    parser.add_argument(
        "--live-sessions", type=int, help="CESAR_LIVE_SESSIONS per worker (default: the largest N)"
    )
    parser.add_argument("--quick", action="store_true", help="--sessions 1 2 --seconds 90")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CESAR_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    )
    parser.add_argument("--baseline-seconds", type=float, default=30.0, help="idle baseline (PostgreSQL)")
    parser.add_argument("--logs", type=Path, help="keep the server's log in this folder")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.seconds = [1, 2], 90.0
    sessions = sorted(set(n for n in args.sessions if n > 0))
    slots = args.live_sessions or max([1, *sessions])

    started = time.monotonic()
    print(f"machine: {machine_line()}")
    pcm, story_seconds = story_pcm()
    print(
        f"{STORY.name}: {story_seconds:.1f} s; {MODEL} on CPU; `cesar serve --workers {args.workers}`, "
        f"CESAR_LIVE_SESSIONS={slots}; database: {args.db}; frames of {FRAME_SECONDS * 1000:.0f} ms at "
        "speaking pace"
    )
    results = Results(args.db)
    with tempfile.TemporaryDirectory(prefix="cesar-bench-live-") as tmp_name:
        tmp = Path(tmp_name)
        logs_dir = args.logs or tmp
        logs_dir.mkdir(parents=True, exist_ok=True)
        with (
            database(args.db, args.postgres_url, tmp) as counters,
            running_serve(
                counters.db_url,
                log_path=logs_dir / f"serve-live-{args.db}.log",
                workers=args.workers,
                env={"CESAR_LIVE_SESSIONS": str(slots), "CESAR_OFFLINE": "true", "HF_HUB_OFFLINE": "1"},
                timeout=300,
            ) as serve,
        ):
            layout = next(line for line in serve.log().splitlines() if line.startswith("Starting "))
            print(f"serve: {layout.removeprefix('Starting ')}")
            client = Client(serve.url)
            ws_url = serve.url.replace("http://", "ws://") + "/live"
            try:
                run_all(args, results, client, serve, counters, ws_url, pcm, story_seconds, sessions)
            finally:
                client.close()
    print(f"\nmachine at the end: {machine_line()}; wall {time.monotonic() - started:.0f} s")
    return report(results)


def run_all(
    args: argparse.Namespace,
    results: Results,
    client: Client,
    serve: Serve,
    counters: Counters,
    ws_url: str,
    pcm: np.ndarray,
    story_seconds: float,
    sessions: Sequence[int],
) -> None:
    # 1. the file
    file_text, file_words, file_latency = file_transcription(client)
    results.file_wer = word_error_rate(REFERENCE, file_text)
    print(
        f"\nfile: {len(file_words)} words, WER {results.file_wer:.3f}, created to completed "
        f"{file_latency:.2f} s"
    )
    costs = pass_cost(pcm, int(args.workers) if args.workers.isdigit() else 1)
    results.pass_costs = costs
    print(
        "one decoding pass (median of 3, this process, server idle): "
        + ", ".join(f"{seconds:.0f} s buffer {cost:.2f} s" for seconds, cost in costs.items())
    )
    baseline = idle_baseline(counters, args.baseline_seconds)
    if baseline is not None:
        print(
            f"idle baseline over {args.baseline_seconds:.0f} s: {baseline['xact_commit']:.1f} commits/s in "
            f"the database, {baseline['xid']:.2f} transaction ids/s in the cluster, "
            f"{baseline['rows']:.2f} rows written/s"
        )

    # 2. one session of the story
    before = counters.snapshot()
    cpu_before = cpu_seconds(serve)
    log = run_session(ws_url, looped(pcm, story_seconds))
    cpu = cpu_seconds(serve) - cpu_before
    keep(args.logs, f"live-{args.db}-story", [log])
    check(log, "latency session")
    assert log.session_id is not None
    words = confirmed_words(log)
    latencies = [w.arrival - w.end for w in words]
    aligned = file_alignment(words, file_words, story_seconds)
    against_file = [w.arrival - end for w, end in aligned]
    seen, never = tentative_first_seen(log, words)
    tentative = [t - w.end for t, w in zip(seen, words, strict=True)]
    live_text = client.transcript(log.session_id, "txt")
    results.live_wer = word_error_rate(REFERENCE, live_text)
    confirmed_text = " ".join(str(e["text"]) for _, e in log.events if e.get("type") == "segment")
    results.confirmed_wer = word_error_rate(REFERENCE, confirmed_text)
    results.confirmed_median, results.confirmed_p95 = pct(latencies, 50), pct(latencies, 95)
    results.file_median, results.file_p95 = pct(against_file, 50), pct(against_file, 95)
    results.tentative_median = pct(tentative, 50)
    points = backlog(log)
    segments = sum(1 for _, e in log.events if e.get("type") == "segment")
    tentatives = sum(1 for _, e in log.events if e.get("type") == "tentative")
    print(
        f"\nlatency session ({log.audio_seconds:.1f} s of audio, {segments} segments, {tentatives} tentative "
        f"events; drain stop -> final {log.drain:.2f} s; server CPU {cpu / log.audio_seconds:.2f} s per "
        f"audio s; load {os.getloadavg()[0]:.2f}):"
    )
    print(
        f"  confirmed words: {len(words)} (file: {len(file_words)}; {len(aligned)} aligned); latency "
        f"median {results.confirmed_median:.2f} s, mean {statistics.fmean(latencies or [math.nan]):.2f} s, "
        f"p95 {results.confirmed_p95:.2f} s, max {max(latencies, default=math.nan):.2f} s"
    )
    print(
        f"  against the aligned file word's end: median {results.file_median:.2f} s, p95 "
        f"{results.file_p95:.2f} s (live end - file end: median "
        f"{pct([w.end - end for w, end in aligned], 50):+.3f} s)"
    )
    print(
        f"  first seen (tentative): median {results.tentative_median:.2f} s, p95 {pct(tentative, 95):.2f} s; "
        f"{never} of {len(words)} words never shown tentative (counted at their segment)"
    )
    print(
        f"  backlog (every second): median {pct([b for _, b in points], 50):.2f} s, max "
        f"{max((b for _, b in points), default=math.nan):.2f} s"
    )
    print(
        f"  WER live transcript {results.live_wer:.3f}, confirmed segments {results.confirmed_wer:.3f}, "
        f"file {results.file_wer:.3f}"
    )
    print(f"  live transcript: {live_text.strip()[:160]}...")
    writes = measured_writes(counters, [log], before, baseline)
    results.writes.append(("1 session, story", writes))

    # 2b. the same story through /v1/realtime, its segments also followed through /live
    results.door, results.realtime_wer, turns = door_overhead(serve.url, story_seconds)
    print(
        f"\n/v1/realtime against /live (one session of the story, {turns} turns, {len(results.door)} "
        f"segments paired): delta - segment arrival median {pct(results.door, 50) * 1000:.0f} ms, p95 "
        f"{pct(results.door, 95) * 1000:.0f} ms, max {max(results.door, default=math.nan) * 1000:.0f} ms; "
        f"WER of the completed turns {results.realtime_wer:.3f}"
    )

    # 3. concurrency
    for count in sessions:
        before = counters.snapshot()
        cpu_before = cpu_seconds(serve)
        wall = time.monotonic()
        logs = run_sessions(ws_url, looped(pcm, args.seconds), count)
        wall = time.monotonic() - wall
        cpu = cpu_seconds(serve) - cpu_before
        keep(args.logs, f"live-{args.db}-n{count}", logs)
        for index, one in enumerate(logs):
            check(one, f"{count} sessions, #{index}")
        rows = []
        keeps = True
        for one in logs:
            first, last, width = window_means(backlog(one), one.audio_seconds)
            ok = last - first <= KEEP_UP_GROWTH
            keeps = keeps and ok
            lat = [w.arrival - w.end for w in confirmed_words(one)]
            rows.append((first, last, ok, pct(lat, 50), pct(lat, 95), one.drain, len(lat)))
        writes = measured_writes(counters, logs, before, baseline)
        results.writes.append((f"{count} sessions x {args.seconds:.0f} s", writes))
        entry = {
            "n": count,
            "first": statistics.fmean(r[0] for r in rows),
            "last": statistics.fmean(r[1] for r in rows),
            "worst_growth": max(r[1] - r[0] for r in rows),
            "median": statistics.median(r[3] for r in rows),
            "p95": max(r[4] for r in rows),
            "drain": max(r[5] or math.nan for r in rows),
            "cpu": cpu / (count * args.seconds),
            "keeps": keeps,
            "width": width,
        }
        results.sweep.append(entry)
        print(
            f"\n{count} concurrent session(s) x {args.seconds:.0f} s (wall {wall:.0f} s, server CPU "
            f"{entry['cpu']:.2f} s per audio s, load {os.getloadavg()[0]:.2f}):"
        )
        for index, (first, last, ok, med, p95, drain, n_words) in enumerate(rows):
            print(
                f"  #{index}: backlog first {width:.0f} s {first:.2f} s, last {width:.0f} s {last:.2f} s "
                f"({'keeps up' if ok else 'FALLS BEHIND'}); {n_words} words, latency median {med:.2f} s, "
                f"p95 {p95:.2f} s; drain {drain:.2f} s"
            )
    kept = [entry["n"] for entry in results.sweep if entry["keeps"]]
    smaller_all = [n for n in kept if all(e["keeps"] for e in results.sweep if e["n"] <= n)]
    results.kept_up = max(smaller_all, default=0) if results.sweep else None


def keep(logs_dir: Path | None, name: str, logs: Sequence[SessionLog]) -> None:
    """The sessions' events as JSON in ``logs_dir`` (with --logs), to look at again."""
    if logs_dir is None:
        return
    document = [
        {
            "session_id": log.session_id,
            "audio_seconds": log.audio_seconds,
            "stop_at": log.stop_at,
            "final_at": log.final_at,
            "events": log.events,
        }
        for log in logs
    ]
    (logs_dir / f"{name}.json").write_text(json.dumps(document))


def check(log: SessionLog, what: str) -> None:
    if log.error or log.final_job is None or log.final_job.get("status") != "completed":
        status = None if log.final_job is None else log.final_job.get("status")
        raise SystemExit(f"{what}: {log.error or 'no final'} (status {status}, close {log.close_code})")


def report(results: Results) -> int:
    print(f"\n=== live transcription, {results.backend} ===")
    print(f"{'figure':<58}{'value':<12}{'target':<18}verdict")
    verdicts = []

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        if ok is not None:
            verdicts.append(ok)
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<58}{value:<12}{target:<18}{verdict}")

    row(
        "confirmed word latency, median (own end)",
        f"{results.confirmed_median:.2f} s",
        "<= 2.0 s",
        results.confirmed_median <= TARGET_MEDIAN,
    )
    row(
        "confirmed word latency, p95 (own end)",
        f"{results.confirmed_p95:.2f} s",
        "<= 4.0 s",
        results.confirmed_p95 <= TARGET_P95,
    )
    row(
        "confirmed word latency, median / p95 (file word's end)",
        f"{results.file_median:.2f}/{results.file_p95:.2f}",
    )
    row(
        "tentative (first seen) latency, median",
        f"{results.tentative_median:.2f} s",
        "<= 1.0 s",
        results.tentative_median <= TARGET_TENTATIVE,
    )
    row("WER live", f"{results.live_wer:.3f}", "<= 0.20", results.live_wer <= TARGET_WER)
    row("WER of the segments confirmed live", f"{results.confirmed_wer:.3f}")
    row("WER file", f"{results.file_wer:.3f}")
    door = pct(results.door, 50)
    row("/v1/realtime delta - /live segment, median", f"{door * 1000:.0f} ms", "<= 100 ms", door <= 0.1)
    row(
        "WER of /v1/realtime's completed turns",
        f"{results.realtime_wer:.3f}",
        "<= 0.20",
        results.realtime_wer <= TARGET_WER,
    )
    margin = results.live_wer - results.file_wer
    row("WER live - file", f"{margin:+.3f}", "<= +0.05", margin <= TARGET_WER_MARGIN)
    for entry in results.sweep:
        row(
            f"N={entry['n']}: backlog first/last {entry['width']:.0f} s (mean), worst growth",
            f"{entry['first']:.2f}/{entry['last']:.2f}",
            f"+{entry['worst_growth']:.2f} s",
        )
        print(
            f"{'':<6}{'keeps up' if entry['keeps'] else 'falls behind'}; latency median "
            f"{entry['median']:.2f} s, "
            f"p95 (worst session) {entry['p95']:.2f} s, drain {entry['drain']:.2f} s, server CPU "
            f"{entry['cpu']:.2f} s per audio s"
        )
    for seconds, cost in results.pass_costs.items():
        row(f"one decoding pass, {seconds:.0f} s buffer (context)", f"{cost:.2f} s")
    if results.kept_up is not None:
        row("most concurrent sessions kept at real time (swept)", str(results.kept_up))
    for name, writes in results.writes:
        audio = writes.per_second(writes.chunks)
        reports = writes.per_second(writes.reports)
        print(
            f"writes per session-second, {name}: audio chunks {audio:.2f} (exact) + reports "
            f"~{reports:.2f} (estimated) = ~{(audio or 0) + (reports or 0):.2f}"
        )
        if writes.xact is not None:
            print(
                f"{'':<6}PostgreSQL, minus idle: {writes.per_second(writes.xact):.2f} commits "
                f"(reads included), {writes.per_second(writes.xid):.2f} write transactions (transaction ids; "
                f"other databases committed {writes.others:.0f} meanwhile), "
                f"{writes.per_second(writes.rows):.2f} rows written"
            )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

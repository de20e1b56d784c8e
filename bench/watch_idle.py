"""What an idle `cesar watch` costs: its CPU on a tree of 10,000 media files where nothing is new.

Makes a temporary tree of ``--files`` small media files (``Show NN/Season NN/Episode NNNN.mkv``, a few bytes
each, modified an hour ago so they count as complete at once), each with its subtitle beside it
(``Episode NNNN.en.srt``), so the watcher, told ``--language en``, finds every file done and submits
nothing. Then, for each mode, it starts ``cesar watch TREE --language en`` in a fresh process with a state
file of its own:

- ``events``: file-system events (inotify here), the default;
- ``poll``: ``--poll 10``, the folders listed every 10 s (what a network share needs).

It waits until the watcher has settled (its first look at the tree done: CPU under 10 % of a core over 3 s),
then reads the process's CPU time (user + system, every thread) over ``--seconds`` (60), and prints CPU %
of one core for each mode (and the main thread's share), with the start-up (time and CPU until settled),
the resident memory, the threads, the context switches a second of all its threads (its wake-ups) and the
machine. Target: at most 1 % of a core in both.

No server is needed as nothing is submitted: the watcher is pointed at a free port nobody listens on. If it
will not run without one (it exits during the start-up), a `cesar api` on a temporary SQLite database is
started for it and the mode is run again. What the watcher prints is checked: any line on stdout (a file
done, failed, submitted) or a warning that events could not be had spoils the figure and is reported.

    .venv/bin/python bench/watch_idle.py [--files 10000] [--seconds 60] [--poll 10] [--modes events,poll]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from machine import machine_line

TARGET_PERCENT = 1.0
#: settled: the watcher used less than this share of a core over SETTLED_WINDOW seconds
SETTLED_SHARE = 0.10
SETTLED_WINDOW = 3.0
START_LIMIT = 300.0
HOUR = 3600


@dataclass
class Figures:
    mode: str
    startup_s: float
    startup_cpu_s: float
    cpu_percent: float
    main_thread_percent: float
    rss_mib: float
    threads: int
    switches_per_s: float
    notes: list[str]


def cesar_binary() -> str:
    beside = Path(sys.executable).with_name("cesar")
    if not beside.exists():
        sys.exit("the `cesar` command is not installed beside this Python: run `make install` first")
    return str(beside)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_tree(root: Path, count: int) -> int:
    """``count`` media files in nested folders, each with its English subtitle; returns the folders made."""
    past = time.time() - HOUR
    folders: set[Path] = set()
    for index in range(count):
        folder = root / f"Show {index // 1000:02d}" / f"Season {index // 100 % 10:02d}"
        if folder not in folders:
            folder.mkdir(parents=True)
            folders.add(folder)
        media = folder / f"Episode {index:05d}.mkv"
        subtitle = folder / f"Episode {index:05d}.en.srt"
        media.write_bytes(b"\x1a\x45\xdf\xa3 not really a video " + str(index).encode())
        subtitle.write_text(f"1\n00:00:00,000 --> 00:00:01,000\nEpisode {index}\n", encoding="utf-8")
        os.utime(media, (past, past))
        os.utime(subtitle, (past, past))
    return len(folders) + len({folder.parent for folder in folders})


def clean_env(work: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CESAR_")}
    env["XDG_STATE_HOME"] = str(work / "state-home")  # never the user's own state
    env["CESAR_LOG_LEVEL"] = "warning"
    return env


@contextlib.contextmanager
def api_server(work: Path) -> Iterator[str]:
    """`cesar api` on a temporary SQLite database, for a watcher that insists on reaching a server."""
    port = free_port()
    env = clean_env(work)
    env.update(
        CESAR_DATABASE_URL=f"sqlite:///{work / 'cesar.db'}", CESAR_PORT=str(port), CESAR_INSECURE="true"
    )
    log = (work / "api.log").open("wb")
    process = subprocess.Popen([cesar_binary(), "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                sys.exit(f"cesar api exited with {process.returncode}: see {work / 'api.log'}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                sys.exit("cesar api did not answer within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main_thread_seconds(process: psutil.Process) -> float:
    """CPU seconds of the main thread alone (the rest: the events thread, where there is one)."""
    for thread in process.threads():
        if thread.id == process.pid:
            return thread.user_time + thread.system_time
    return 0.0


def context_switches(process: psutil.Process) -> int:
    """Voluntary and involuntary context switches of every thread (psutil's are the main thread's)."""
    total = 0
    try:
        for status in Path(f"/proc/{process.pid}/task").glob("*/status"):
            for line in status.read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    except OSError:
        pass
    if total:
        return total
    switches = process.num_ctx_switches()
    return switches.voluntary + switches.involuntary


def measure(mode: str, tree: Path, work: Path, server: str, args: argparse.Namespace) -> Figures | None:
    """One watcher in ``mode``; None when it exited during its start-up (it wants a server)."""
    state = work / f"watch-{mode}.json"
    command = [
        cesar_binary(),
        "watch",
        str(tree),
        "--server",
        server,
        "--language",
        "en",
        "--state",
        str(state),
    ]
    if mode == "poll":
        command += ["--poll", str(args.poll)]
    out_path, err_path = work / f"watch-{mode}.out", work / f"watch-{mode}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        popen = subprocess.Popen(
            command, env=clean_env(work), stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        process = psutil.Process(popen.pid)
        try:
            # settled: its first look at the tree done (and, polling, between two looks)
            previous = 0.0
            time.sleep(SETTLED_WINDOW)
            while True:
                if popen.poll() is not None:
                    return None
                used = cpu_seconds(process)
                if used - previous < SETTLED_SHARE * SETTLED_WINDOW:
                    break
                if time.monotonic() - started > START_LIMIT:
                    sys.exit(f"{mode}: the watcher did not settle within {START_LIMIT:.0f} s")
                previous = used
                time.sleep(SETTLED_WINDOW)
            startup_s, startup_cpu = time.monotonic() - started, cpu_seconds(process)

            switches = context_switches(process)
            before, main_before, began = cpu_seconds(process), main_thread_seconds(process), time.monotonic()
            time.sleep(args.seconds)
            if popen.poll() is not None:
                sys.exit(f"{mode}: the watcher exited with {popen.returncode} while measured; see {err_path}")
            used, elapsed = cpu_seconds(process) - before, time.monotonic() - began
            main_used = main_thread_seconds(process) - main_before
            switched = context_switches(process) - switches
            rss = process.memory_info().rss / 2**20
            threads = process.num_threads()
        finally:
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)  # Ctrl-C: it saves its state and ends
                try:
                    popen.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
    notes = []
    printed = out_path.read_text(encoding="utf-8", errors="replace").splitlines()
    if printed:
        notes.append(f"it printed {len(printed)} lines (nothing should be new): {printed[0]!r}")
    warnings = err_path.read_text(encoding="utf-8", errors="replace")
    if "events unavailable" in warnings or "events stopped" in warnings:
        notes.append("it fell back to polling: file-system events could not be had")
    else:  # Ctrl-C's own line aside
        said = [line for line in warnings.splitlines() if line.strip() and "interrupted" not in line]
        if said:
            notes.append(f"it said {len(said)} lines on stderr: {said[-1][:200]!r}")
    return Figures(
        mode=mode,
        startup_s=startup_s,
        startup_cpu_s=startup_cpu,
        cpu_percent=100 * used / elapsed,
        main_thread_percent=100 * main_used / elapsed,
        rss_mib=rss,
        threads=threads,
        switches_per_s=switched / elapsed,
        notes=notes,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="media files in the tree (default 10000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds measured per mode (default 60)")
    parser.add_argument("--poll", type=float, default=10.0, help="--poll of the polling mode (default 10)")
    parser.add_argument("--modes", default="events,poll", help="events, poll or both (default both)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not set(modes) <= {"events", "poll"}:
        parser.error("--modes: events and/or poll")

    print(f"machine: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="cesar-watch-idle-") as scratch:
        work = Path(scratch)
        tree = work / "media"
        made = time.perf_counter()
        folders = make_tree(tree, args.files)
        print(
            f"tree: {args.files:,} media files, each with its .en.srt, in {folders} folders "
            f"(made in {time.perf_counter() - made:.1f} s)"
        )
        with contextlib.ExitStack() as stack:
            server = f"http://127.0.0.1:{free_port()}"  # nobody listens: nothing is to be submitted
            results = []
            for mode in modes:
                figures = measure(mode, tree, work, server, args)
                if figures is None:
                    print(
                        f"{mode}: the watcher exited at start without a server: starting `cesar api` for it"
                    )
                    server = stack.enter_context(api_server(work))
                    figures = measure(mode, tree, work, server, args)
                    if figures is None:
                        err = (work / f"watch-{mode}.err").read_text(errors="replace").strip()
                        sys.exit(f"{mode}: the watcher exits at start even with a server:\n{err[-2000:]}")
                results.append(figures)
                label = "events" if mode == "events" else f"polling every {args.poll:g} s"
                print(
                    f"{label}: {figures.cpu_percent:.2f} % of a core over {args.seconds:g} s "
                    f"(main thread {figures.main_thread_percent:.2f} %) "
                    f"(settled after {figures.startup_s:.1f} s, {figures.startup_cpu_s:.2f} s CPU; "
                    f"RSS {figures.rss_mib:.0f} MiB, {figures.threads} threads, "
                    f"{figures.switches_per_s:.1f} context switches/s)"
                )
                for note in figures.notes:
                    print(f"  note: {note}")
        print(f"machine after: {machine_line()}")
        worst = max(figures.cpu_percent for figures in results)
        verdict = "met" if worst <= TARGET_PERCENT else "NOT met"
        print(f"idle CPU, worst mode: {worst:.2f} % of a core (target <= {TARGET_PERCENT:g} %: {verdict})")
        return 0 if worst <= TARGET_PERCENT else 1


if __name__ == "__main__":
    sys.exit(main())

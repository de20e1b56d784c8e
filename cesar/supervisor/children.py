"""One supervised child process: how it starts, when it may restart, how it stops."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Backoff", "Child", "ChildSpec"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    """What to run: ``argv`` with exactly ``env`` as its environment."""

    name: str  # "api", "worker-1": how the log names it
    argv: tuple[str, ...]
    env: Mapping[str, str]
    role: str = "worker"  # "api" or "worker"


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``first``, doubling up to ``longest``; a run of ``stable`` seconds starts over."""

    first: float = 1.0
    longest: float = 30.0
    stable: float = 30.0

    def delay(self, failures: int) -> float:
        """Wait before the restart that follows ``failures`` (>= 1) exits in a row."""
        return min(self.longest, self.first * 2.0 ** max(0, failures - 1))


class Child:
    """A running (or waiting to restart) child process."""

    def __init__(self, spec: ChildSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0  # exits in a row without a stable run
        self.restart_at: float | None = None
        self._clock = clock

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.spec.argv,
            env=dict(self.spec.env),
            stdin=subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl-C reaches serve alone, and serve decides the order of
            # shutdown; the children still die with serve through PR_SET_PDEATHSIG.
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
        )
        self.started_at = self._clock()
        self.restart_at = None
        logger.debug("started %s (pid %d): %s", self.name, self.process.pid, " ".join(self.spec.argv))

    def exited(self) -> int | None:
        """The exit code if the child has exited (and not been handled yet), else None."""
        if self.process is None or self.restart_at is not None:
            return None
        return self.process.poll()

    def schedule_restart(self, backoff: Backoff) -> float:
        """Record an exit; returns the delay before :meth:`due` says to start again."""
        now = self._clock()
        if now - self.started_at >= backoff.stable:
            self.failures = 0
        self.failures += 1
        delay = backoff.delay(self.failures)
        self.restart_at = now + delay
        return delay

    def uptime(self) -> float:
        return self._clock() - self.started_at if self.process is not None else 0.0

    def due(self) -> bool:
        return self.restart_at is not None and self._clock() >= self.restart_at

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):  # exited between poll and kill
                self.process.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        """True once the process is gone (or was never started)."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: ask Linux to SIGTERM the child when serve dies, so children never outlive it."""
    import ctypes

    # looked up before fork(): the child only makes the call
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # serve may have died between fork() and prctl(): then the signal would never come
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec

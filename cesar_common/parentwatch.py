"""Stop a supervised child when its supervisor is gone, so `cesar serve` never leaves orphans.

`cesar serve` sets ``PR_SET_PDEATHSIG`` on its children (Linux) and also exports
``CESAR_SUPERVISOR_PID``. A child calls :func:`watch_parent` once at start: when that variable names its
parent, a daemon thread checks every second that the parent is still the same process and, when it is not
(the supervisor died and the child was re-parented), sends SIGTERM to its own process, so the child's
normal graceful shutdown runs. Started any other way (`cesar worker` on its own host, under honcho or
systemd), the child is left alone: there a changed parent is no reason to stop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from cesar_common.text import plain_number

__all__ = ["SUPERVISOR_PID_ENV", "supervisor_pid", "watch_parent"]

logger = logging.getLogger(__name__)

#: Set by `cesar serve` in its children's environment: the pid of the supervisor.
SUPERVISOR_PID_ENV = "CESAR_SUPERVISOR_PID"


def supervisor_pid(environ: dict[str, str] | None = None) -> int | None:
    """The pid `cesar serve` exported for this process, if any."""
    value = (os.environ if environ is None else environ).get(SUPERVISOR_PID_ENV, "")
    return plain_number(value.strip())


def watch_parent(
    parent_pid: int | None = None, *, interval: float = 1.0, stop_signal: int = signal.SIGTERM
) -> threading.Thread | None:
    """Send ``stop_signal`` to this process once its parent ``parent_pid`` is gone.

    ``parent_pid`` defaults to ``CESAR_SUPERVISOR_PID``; without one, nothing is watched and None is
    returned. If the parent is already gone (it died while this process started), the signal is sent at once.
    """
    parent_pid = supervisor_pid() if parent_pid is None else parent_pid
    if parent_pid is None:
        return None
    if os.getppid() != parent_pid:
        logger.warning("supervisor %d is gone: stopping", parent_pid)
        os.kill(os.getpid(), stop_signal)
        return None
    thread = threading.Thread(
        target=_watch, args=(parent_pid, interval, stop_signal), name="cesar-parentwatch", daemon=True
    )
    thread.start()
    return thread


def _watch(parent_pid: int, interval: float, stop_signal: int) -> None:
    # Event().wait is an interruptible sleep that needs no extra import; nothing ever sets it.
    pause = threading.Event()
    while os.getppid() == parent_pid:
        pause.wait(interval)
    logger.warning("supervisor %d is gone: stopping", parent_pid)
    os.kill(os.getpid(), stop_signal)

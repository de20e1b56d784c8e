"""SIGTERM and SIGINT, handled in one place: they set a stop event that long-running loops watch.

The first signal asks for a graceful stop (the event is set and the loop winds down at its own pace). A second
one forces the issue by raising ``KeyboardInterrupt`` in the main thread, which still unwinds ``finally``
blocks; a third exits at once, for a main thread stuck in native code.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["stop_on_signals"]

log = logging.getLogger(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Counts stop signals and sets ``event`` on the first."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.received = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            log.info("%s received: stopping (send it again to force)", name)
            self.event.set()
        elif self.received == 2:
            log.warning("%s received again: forcing the stop", name)
            raise KeyboardInterrupt
        else:
            os._exit(128 + signum)


@contextmanager
def stop_on_signals(
    event: threading.Event | None = None, *, signals: tuple[signal.Signals, ...] = STOP_SIGNALS
) -> Iterator[threading.Event]:
    """Install handlers that set ``event`` (a new one if not given) and yield it; restore the old ones after.

    Outside the main thread, where Python cannot install handlers, the event is yielded untouched.
    """
    event = event if event is not None else threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    handler = StopSignals(event)
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
        yield event
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)

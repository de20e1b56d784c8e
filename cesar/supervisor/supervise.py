"""Keep the API and the workers running: restart what dies, stop everything in order."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence

from cesar.supervisor.children import Backoff, Child
from cesar_common.errors import ServerError

__all__ = ["EXIT_MARGIN_SECONDS", "Supervisor"]

logger = logging.getLogger(__name__)

#: A child that exits this many times in a row, each time soon after starting, will not get better.
MAX_QUICK_FAILURES = 5
#: On top of the workers' grace period, time for the processes themselves to exit.
EXIT_MARGIN_SECONDS = 10.0


class Supervisor:
    """Runs ``children`` until told to stop.

    ``on_api_exit`` runs when the API child exits and may raise to stop serve (the port was taken);
    ``on_api_ready`` runs each time a started API accepts connections (``api_ready`` tells when).
    """

    def __init__(
        self,
        children: Sequence[Child],
        *,
        backoff: Backoff | None = None,
        api_ready: Callable[[], bool] = lambda: True,
        on_api_ready: Callable[[bool], None] = lambda first: None,
        on_api_exit: Callable[[int], None] = lambda code: None,
        poll_interval: float = 0.2,
        max_quick_failures: int = MAX_QUICK_FAILURES,
    ) -> None:
        self.children = list(children)
        self.backoff = backoff or Backoff()
        self._api_ready = api_ready
        self._on_api_ready = on_api_ready
        self._on_api_exit = on_api_exit
        self._poll_interval = poll_interval
        self._max_quick_failures = max_quick_failures
        self._api_waiting = False  # an API child was started and has not accepted a connection yet
        self._api_seen_ready = False
        self.restarts = 0

    @property
    def api(self) -> Child | None:
        return next((child for child in self.children if child.spec.role == "api"), None)

    @property
    def workers(self) -> list[Child]:
        return [child for child in self.children if child.spec.role != "api"]

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)

    def run(self, stop: threading.Event) -> None:
        """Supervise until ``stop`` is set. Raises a CesarError when serve cannot go on."""
        while not stop.is_set():
            self.step()
            stop.wait(self._poll_interval)

    def step(self) -> None:
        """One look at every child: note exits, start what is due, notice the API is up."""
        for child in self.children:
            code = child.exited()
            if code is not None:
                self._handle_exit(child, code)
            elif child.due():
                logger.info("restarting %s", child.name)
                self.restarts += 1
                self._start(child)
        api = self.api
        if self._api_waiting and api is not None and api.running and self._api_ready():
            self._api_waiting = False
            first, self._api_seen_ready = not self._api_seen_ready, True
            self._on_api_ready(first)

    def shutdown(self, *, grace: float) -> bool:
        """Stop the API, then let the workers finish or hand back their jobs; SIGKILL after the grace period.

        Returns True when every child exited on its own. A second stop signal interrupts the wait
        (KeyboardInterrupt, from :mod:`cesar_common.signals`): then call :meth:`kill_all`.
        """
        api = self.api
        if api is not None:
            api.signal(signal.SIGTERM)
        for child in self.workers:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + EXIT_MARGIN_SECONDS
        while any(child.running for child in self.children):
            if time.monotonic() >= deadline:
                logger.warning("children still running %.0f s after SIGTERM: killing them", grace)
                break
            time.sleep(0.1)
        clean = not any(child.running for child in self.children)
        self.kill_all()
        return clean

    def kill_all(self) -> None:
        """SIGKILL whatever still runs, and reap it."""
        for child in self.children:
            child.signal(signal.SIGKILL)
        for child in self.children:
            child.wait(timeout=5)

    def _start(self, child: Child) -> None:
        child.start()
        if child.spec.role == "api":
            self._api_waiting = True

    def _handle_exit(self, child: Child, code: int) -> None:
        uptime = child.uptime()
        if child.spec.role == "api":
            self._api_waiting = False
            self._on_api_exit(code)
        delay = child.schedule_restart(self.backoff)
        how = _describe_exit(code)
        if child.failures >= self._max_quick_failures:
            raise ServerError(
                f"{child.name} keeps stopping right after it starts ({how}, {child.failures} times): "
                "see its log above"
            )
        log = logger.info if code == 0 else logger.warning
        log("%s (pid %s) %s after %.1f s; restarting in %.0f s", child.name, child.pid, how, uptime, delay)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"

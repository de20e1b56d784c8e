"""SIGTERM/SIGINT set the stop event; a second signal forces the stop; old handlers come back."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cesar_common.signals import stop_on_signals


def _wait(event: threading.Event) -> bool:
    return event.wait(2.0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_the_stop_event(signum: signal.Signals) -> None:
    before = signal.getsignal(signum)
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signum)
        assert _wait(stop)
    assert signal.getsignal(signum) is before


def test_a_second_signal_forces_the_stop() -> None:
    with pytest.raises(KeyboardInterrupt), stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert _wait(stop)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises here
    assert signal.getsignal(signal.SIGTERM) is not None


def test_a_given_event_is_used() -> None:
    event = threading.Event()
    with stop_on_signals(event) as stop:
        assert stop is event


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def target() -> None:
        with stop_on_signals() as stop:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(stop)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert seen[0] is before
    assert isinstance(seen[1], threading.Event)

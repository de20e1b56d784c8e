"""How a live stream URL's worker waits between tries to reconnect a dropped stream (on a test clock)."""

from __future__ import annotations

from cesar_worker.live_stream_url import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tries(backoff: Backoff, clock: Clock, *, each: float = 0.0) -> list[float]:
    """The waits until it gives up, each try taking ``each`` seconds."""
    waits = []
    while (wait := backoff.next_wait()) is not None:
        waits.append(wait)
        clock.now += wait + each
    return waits


def test_the_waits_double_up_to_a_cap_within_the_idle_time() -> None:
    clock = Clock()
    waits = tries(Backoff(30.0, clock=clock), clock)
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert sum(waits) < 30.0  # no try starts after the idle time: the session ends then


def test_slow_tries_count_against_the_idle_time() -> None:
    clock = Clock()
    assert tries(Backoff(10.0, clock=clock), clock, each=4.0) == [0.5, 1.0]


def test_an_idle_time_shorter_than_the_first_wait_gives_up_at_once() -> None:
    clock = Clock()
    assert tries(Backoff(0.5, clock=clock), clock) == []


def test_a_stream_that_came_back_starts_from_the_first_wait_again() -> None:
    clock = Clock()
    backoff = Backoff(30.0, clock=clock)
    assert tries(backoff, clock)[:3] == [0.5, 1.0, 2.0]
    backoff.reset()
    clock.now += 1000
    assert backoff.next_wait() == 0.5
    assert backoff.next_wait() == 1.0

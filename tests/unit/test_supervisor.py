"""The supervisor with small real child processes: restarts, backoff, shutdown, no orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cesar.supervisor.children import Backoff, Child, ChildSpec
from cesar.supervisor.supervise import Supervisor
from cesar_common.errors import ServerError
from cesar_common.parentwatch import SUPERVISOR_PID_ENV, supervisor_pid, watch_parent

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")
# exits 0 on SIGTERM after a short "grace period", like a worker handing back its job
GRACEFUL = (
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.2), sys.exit(0)))\n"
    "time.sleep(60)",
)
STUBBORN = (
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
)
FAST = Backoff(first=0.05, longest=0.2, stable=5.0)


def spec(argv: tuple[str, ...], name: str = "worker-1", role: str = "worker") -> ChildSpec:
    return ChildSpec(name, argv, dict(os.environ), role=role)


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for supervisor in made:
        supervisor.kill_all()


def make(supervisors: list[Supervisor], *specs: ChildSpec, **options: object) -> Supervisor:
    supervisor = Supervisor([Child(item) for item in specs], backoff=FAST, poll_interval=0.02, **options)  # type: ignore[arg-type]
    supervisors.append(supervisor)
    return supervisor


def handle_sigterm(supervisor: Supervisor, timeout: float = 30.0) -> None:
    """Wait until every child has its SIGTERM handler in place (caught or ignored, as /proc shows it)."""
    bit = 1 << (signal.SIGTERM - 1)

    def handles(pid: int) -> bool:
        status = Path(f"/proc/{pid}/status").read_text()
        masks = [
            int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigCgt", "SigIgn"))
        ]
        return any(mask & bit for mask in masks)

    deadline = time.monotonic() + timeout
    while not all(handles(child.pid or 0) for child in supervisor.children):
        assert time.monotonic() < deadline, "the children never set up their SIGTERM handling"
        time.sleep(0.01)


def step_until(supervisor: Supervisor, condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        supervisor.step()
        time.sleep(0.02)


def test_backoff_doubles_up_to_a_ceiling() -> None:
    backoff = Backoff(first=1, longest=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_child_that_dies_is_restarted(supervisors: list[Supervisor]) -> None:
    supervisor = make(supervisors, spec(SLEEPER))
    supervisor.start_all()
    child = supervisor.children[0]
    first_pid = child.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    step_until(supervisor, lambda: child.running and child.pid != first_pid)
    assert supervisor.restarts == 1
    assert child.failures == 1


def test_a_stable_run_resets_the_backoff(supervisors: list[Supervisor]) -> None:
    now = [100.0]
    child = Child(spec(SLEEPER), clock=lambda: now[0])
    child.started_at = 100.0
    child.failures = 3
    now[0] = 100.0 + FAST.stable + 1
    assert child.schedule_restart(FAST) == FAST.first
    assert child.failures == 1


def test_a_child_that_keeps_failing_at_start_stops_serve(supervisors: list[Supervisor]) -> None:
    supervisor = make(supervisors, spec((sys.executable, "-c", "raise SystemExit(3)")), max_quick_failures=3)
    supervisor.start_all()
    with pytest.raises(ServerError, match="worker-1 keeps stopping right after it starts"):
        step_until(supervisor, lambda: False)


def test_the_api_exit_hook_can_stop_serve(supervisors: list[Supervisor]) -> None:
    def refuse(code: int) -> None:
        raise ServerError(f"api exited {code}")

    supervisor = make(
        supervisors, spec((sys.executable, "-c", "raise SystemExit(1)"), "api", "api"), on_api_exit=refuse
    )
    supervisor.start_all()
    with pytest.raises(ServerError, match="api exited 1"):
        step_until(supervisor, lambda: False)


def test_the_api_ready_hook_runs_once_per_start(supervisors: list[Supervisor]) -> None:
    calls: list[bool] = []
    supervisor = make(supervisors, spec(SLEEPER, "api", "api"), on_api_ready=calls.append)
    supervisor.start_all()
    step_until(supervisor, lambda: calls == [True])
    api = supervisor.children[0]
    os.kill(api.pid or 0, signal.SIGKILL)
    step_until(supervisor, lambda: calls == [True, False])


def test_shutdown_lets_children_exit_gracefully(supervisors: list[Supervisor]) -> None:
    supervisor = make(supervisors, spec(GRACEFUL, "api", "api"), spec(GRACEFUL))
    supervisor.start_all()
    handle_sigterm(supervisor)
    assert supervisor.shutdown(grace=5) is True
    assert [child.process.returncode for child in supervisor.children] == [0, 0]  # type: ignore[union-attr]


def test_shutdown_kills_what_outlives_the_grace_period(
    supervisors: list[Supervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cesar.supervisor.supervise.EXIT_MARGIN_SECONDS", 0.3)
    supervisor = make(supervisors, spec(STUBBORN))
    supervisor.start_all()
    handle_sigterm(supervisor)
    assert supervisor.shutdown(grace=0) is False
    assert supervisor.children[0].process.returncode == -signal.SIGKILL  # type: ignore[union-attr]


def _spawn_middle(tmp_path: Path, body: str) -> tuple[subprocess.Popen[str], int]:
    """A process (like serve) that starts a grandchild, prints its pid and waits to be killed."""
    script = tmp_path / "middle.py"
    script.write_text(textwrap.dedent(body))
    middle = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert middle.stdout is not None
    grandchild = int(middle.stdout.readline())
    return middle, grandchild


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).kill()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    middle, grandchild = _spawn_middle(
        tmp_path,
        """
        import os, sys, time
        from cesar.supervisor.children import Child, ChildSpec
        child = Child(ChildSpec("w", (sys.executable, "-c", "import time; time.sleep(60)"), dict(os.environ)))
        child.start()
        print(child.pid, flush=True)
        time.sleep(60)
        """,
    )
    try:
        assert psutil.pid_exists(grandchild)
        middle.kill()
        middle.wait()
        assert _gone(grandchild), "the child outlived its supervisor"
    finally:
        _kill_quietly(grandchild)


def test_watch_parent_stops_a_child_whose_supervisor_died(tmp_path: Path) -> None:
    # started with plain Popen (no PDEATHSIG): only watch_parent can notice
    middle, grandchild = _spawn_middle(
        tmp_path,
        f"""
        import os, subprocess, sys, time
        code = "from cesar_common.parentwatch import watch_parent; watch_parent(interval=0.05); " \\
               "print('watching', flush=True); import time; time.sleep(60)"
        env = {{**os.environ, "{SUPERVISOR_PID_ENV}": str(os.getpid())}}
        child = subprocess.Popen([sys.executable, "-c", code], env=env)
        print(child.pid, flush=True)
        time.sleep(60)
        """,
    )
    try:
        assert middle.stdout is not None and middle.stdout.readline().strip() == "watching"
        assert psutil.pid_exists(grandchild)
        middle.kill()
        middle.wait()
        assert _gone(grandchild), "the child outlived its supervisor"
    finally:
        _kill_quietly(grandchild)


def test_watch_parent_does_nothing_outside_serve() -> None:
    assert supervisor_pid({}) is None
    assert watch_parent(None) is None or SUPERVISOR_PID_ENV in os.environ
    thread = watch_parent(os.getppid(), interval=0.05)
    assert isinstance(thread, threading.Thread) and thread.daemon


def test_an_api_that_dies_because_its_port_was_taken_stops_serve(supervisors: list[Supervisor]) -> None:
    from cesar.supervisor.ports import PortInUseError, check_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = make(
            supervisors,
            spec((sys.executable, "-c", "raise SystemExit(1)"), "api", "api"),
            spec(SLEEPER),
            on_api_exit=lambda code: check_port("127.0.0.1", port),
        )
        supervisor.start_all()
        with pytest.raises(PortInUseError, match=f"port {port} is in use: pass --port"):
            step_until(supervisor, lambda: False)
    supervisor.shutdown(grace=1)
    assert not any(child.running for child in supervisor.children)

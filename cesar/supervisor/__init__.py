"""`cesar serve`'s supervisor: the API and the workers as child processes of one command."""

from __future__ import annotations

from cesar.supervisor.ports import PortInUseError
from cesar.supervisor.serve import run_serve

__all__ = ["PortInUseError", "children", "layout", "ports", "run_serve", "serve", "supervise"]

"""The client commands: `cesar submit` and `cesar remote ...` talk HTTP to a Cesar server
(:mod:`.client`), in batches of files (:mod:`.batch`), as the commands ask (:mod:`.commands`)."""

from __future__ import annotations

__all__ = ["batch", "client", "commands"]

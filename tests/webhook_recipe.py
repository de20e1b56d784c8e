"""The manual's signature check for webhook receivers (docs/integrations.md), verbatim: test_docs checks it.

Tests verify deliveries with this copy rather than with ``cesar_worker.webhooks``, so the recipe users
paste is the one that is tested.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    # ASCII digits, and few: isdigit() alone passes "²", on which int() raises
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 18):
        return False  # missing or malformed
    if abs(time.time() - int(timestamp)) > tolerance:
        return False  # too old: a replay
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), received.encode())  # bytes: str must be ASCII

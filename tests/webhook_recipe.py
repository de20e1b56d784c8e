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
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False  # missing, or too old: a replay
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)

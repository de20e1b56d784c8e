"""The API's routes, one module per resource."""

from __future__ import annotations

"""The ``cesar`` command line and ``cesar serve``'s supervisor: the layer above the API, the worker and
their shared base (``cesar_common``). Nothing below imports it."""

from __future__ import annotations

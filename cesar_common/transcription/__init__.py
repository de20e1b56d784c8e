"""The transcription engine: model resolution, decoding, results and output formats.

Importing this package is cheap and never imports faster_whisper: the API imports ``result``,
``writers`` and ``audio`` from here, and only ``models`` and ``engine`` load Whisper (lazily).
"""

from __future__ import annotations

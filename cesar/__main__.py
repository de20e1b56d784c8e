"""``python -m cesar``: the ``cesar`` command."""

from __future__ import annotations

from cesar.cli import main

if __name__ == "__main__":
    main()

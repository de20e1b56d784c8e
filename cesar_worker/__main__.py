"""``python -m cesar_worker``: a worker as ``cesar serve`` starts it.

Settings come from the environment (``CESAR_*``, written by serve from its own settings), and the default
model is loaded before the first claim, so no client waits for it. ``cesar worker`` is the same process
with command-line options.
"""

from __future__ import annotations

import sys

from cesar_common.exits import one_line_errors, refuse_arguments
from cesar_common.settings import get_settings


def main() -> None:
    refuse_arguments("cesar_worker", "cesar worker")
    with one_line_errors():
        from cesar_worker.worker import run_process

        code = run_process(get_settings(), preload=True)
    sys.exit(code)


if __name__ == "__main__":
    main()

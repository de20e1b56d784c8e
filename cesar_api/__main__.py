"""``python -m cesar_api``: the API alone on ``CESAR_HOST``/``CESAR_PORT``, as ``cesar serve`` starts it.

Unlike ``cesar api`` it does not check the schema again: ``cesar serve`` has just migrated or checked it.
"""

from __future__ import annotations

from cesar_api.server import main

if __name__ == "__main__":
    main()

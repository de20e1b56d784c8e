"""``python -m cesar_api``: the API alone on ``CESAR_HOST``/``CESAR_PORT``, as ``cesar serve`` starts it.

Settings come from the environment (``CESAR_*``). Unlike ``cesar api`` it does not check the schema again:
``cesar serve`` has just migrated or checked it (the check costs the Alembic import, a third of a second).
"""

from __future__ import annotations

from cesar_common.exits import one_line_errors, refuse_arguments
from cesar_common.settings import get_settings


def main() -> None:
    refuse_arguments("cesar_api", "cesar api")
    with one_line_errors():
        from cesar_api.server import serve

        serve(get_settings(), check_schema=False)


if __name__ == "__main__":
    main()

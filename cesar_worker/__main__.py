"""``python -m cesar_worker``: the same command as ``cesar worker``."""

from __future__ import annotations

from cesar_common.cli.worker import worker


def main() -> None:
    worker.main(prog_name="python -m cesar_worker")


if __name__ == "__main__":
    main()

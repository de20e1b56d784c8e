"""What one PostgreSQL database wrote to the WAL, and how much room it took, between marks (bench/fleet_sim.py
``--storage``).

Two measures of the WAL between two marks:

- **server**: ``pg_wal_lsn_diff`` of ``pg_current_wal_lsn()`` at the marks: every byte of WAL the server
  wrote meanwhile, whichever database wrote it (other test runs on the same server count too);
- **this database**: the records ``pg_waldump`` reads between the same LSNs that touch this database's
  relations (``rel <tablespace>/<this database's oid>/<relfilenode>``), plus the records of the transactions
  that did (their commits): their total length, the part of it that is full-page images, and which table
  it was for. Without ``pg_waldump`` or read access to ``pg_wal`` (a server elsewhere), only the first.

:meth:`WalMeter.begin` vacuums and checkpoints (every page's first change after it is logged whole: the same
start for each side of a comparison) and reserves the WAL from there with a temporary physical replication
slot (a checkpoint meanwhile does not recycle the segments before pg_waldump has read them; the slot goes
with this meter's connection, whatever happens to the process). Needs a superuser (the bench's ``postgres``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Mark", "WalMeter", "WalPhase"]

SLOT = f"cesar_bench_wal_{os.getpid()}"
_RECORD = re.compile(r"len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+)/([0-9A-F]+)")
_REL = re.compile(r"rel (\d+)/(\d+)/(\d+)")


@dataclass
class Mark:
    """The server's WAL position and this database's sizes at one point."""

    name: str
    lsn: str
    database_bytes: int
    tables: dict[str, int]  # table (with its TOAST and indexes) -> bytes


@dataclass
class WalPhase:
    """The WAL between two marks."""

    name: str
    server_bytes: int
    database_bytes: int | None = None  # this database's records (pg_waldump), None when not read
    fpi_bytes: int | None = None  # of which full-page images
    records: int | None = None
    by_table: dict[str, int] = field(default_factory=dict)  # this database's record bytes per table


def _lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class WalMeter:
    """Marks on one database (``url``: ``postgresql://`` or ``postgresql+psycopg://``)."""

    def __init__(self, url: str, tables: tuple[str, ...] = ("jobs", "job_audio")) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self.tables = tables
        self.marks: list[Mark] = []
        self.database_oid = int(self._one("SELECT oid FROM pg_database WHERE datname = current_database()"))
        self.waldump = self._find_waldump()
        self.why_no_waldump = "" if self.waldump else "pg_waldump or pg_wal is not at hand"

    def _one(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params or None).fetchone()
        assert row is not None
        return row[0]

    def _find_waldump(self) -> tuple[str, Path] | None:
        major = int(self._one("SHOW server_version_num")) // 10000
        binary = shutil.which("pg_waldump") or f"/usr/lib/postgresql/{major}/bin/pg_waldump"
        try:
            wal_dir = Path(self._one("SHOW data_directory")) / "pg_wal"
            if not (Path(binary).is_file() and os.access(wal_dir, os.R_OK | os.X_OK)):
                return None
        except Exception:
            return None
        return binary, wal_dir

    # --- marks ---------------------------------------------------------------------------------
    def begin(self) -> Mark:
        """VACUUM, CHECKPOINT, reserve the WAL from here (a temporary slot), and the first mark.

        The VACUUM settles a fresh schema: its migrations leave dead rows in the catalogs (pg_attribute,
        pg_class, pg_index) that the first reads would otherwise prune, about 80 KB of WAL (full-page
        images) once per database, which is no part of what is measured."""
        self.conn.execute("VACUUM")
        self.conn.execute("CHECKPOINT")
        if self.waldump:
            self.conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (SLOT,))
        return self.mark("start")

    def mark(self, name: str) -> Mark:
        lsn = str(self._one("SELECT pg_current_wal_lsn()"))
        sizes = {
            table: int(self._one("SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)", table))
            for table in self.tables
        }
        mark = Mark(name, lsn, int(self._one("SELECT pg_database_size(current_database())")), sizes)
        self.marks.append(mark)
        return mark

    def phases(self) -> list[WalPhase]:
        """The WAL between each mark and the next (read by pg_waldump now), then the slot let go."""
        phases = [
            WalPhase(
                after.name,
                int(self._one("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", after.lsn, before.lsn)),
            )
            for before, after in zip(self.marks, self.marks[1:], strict=False)
        ]
        if self.waldump and len(self.marks) > 1:
            try:
                self._attribute(phases)
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                self.why_no_waldump = f"pg_waldump failed: {exc}"
            finally:
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
        return phases

    def close(self) -> None:
        self.conn.close()  # a slot still there is temporary: it goes with the connection

    # --- pg_waldump ----------------------------------------------------------------------------
    def _relations(self) -> dict[int, str]:
        """relfilenode -> its table: ``job_audio``, ``job_audio (TOAST)``, ``jobs (indexes)``."""
        rows = self.conn.execute(
            "SELECT pg_relation_filenode(c.oid), c.relkind, c.relname, "
            "coalesce(i.indrelid, 0)::oid::regclass::text, "
            "(SELECT o.relname FROM pg_class o WHERE o.reltoastrelid = "
            "  CASE WHEN c.relkind = 'i' THEN i.indrelid ELSE c.oid END) "
            "FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE pg_relation_filenode(c.oid) IS NOT NULL"
        ).fetchall()
        names: dict[int, str] = {}
        for filenode, kind, name, indexed, toast_owner in rows:
            if toast_owner:
                names[int(filenode)] = f"{toast_owner} (TOAST)"
            elif kind == "i":
                names[int(filenode)] = f"{indexed} (indexes)"
            else:
                names[int(filenode)] = name
        return names

    def _attribute(self, phases: list[WalPhase]) -> None:
        binary, wal_dir = self.waldump  # type: ignore[misc]
        bounds = [_lsn(mark.lsn) for mark in self.marks]
        names = self._relations()
        command = [binary, "-p", str(wal_dir), "-s", self.marks[0].lsn, "-e", self.marks[-1].lsn]
        ours: set[int] = set()  # transactions that changed this database's relations
        pending: list[tuple[int, int, int, int]] = []  # records of no relation here: lsn, tot, fpi, xid
        counted: list[tuple[int, int, int, str]] = []  # this database's records: lsn, tot, fpi, table
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as dump:
            assert dump.stdout is not None
            for line in dump.stdout:
                record = _RECORD.search(line)
                if record is None:
                    continue
                rec, tot, xid = int(record[1]), int(record[2]), int(record[3])
                lsn = (int(record[4], 16) << 32) + int(record[5], 16)
                rels = [(int(db), int(node)) for _space, db, node in _REL.findall(line)]
                mine = [node for db, node in rels if db == self.database_oid]
                if mine:
                    if xid:
                        ours.add(xid)
                    counted.append((lsn, tot, tot - rec, names.get(mine[0], "other (catalogs)")))
                elif xid and not rels:
                    pending.append((lsn, tot, tot - rec, xid))
            errors = dump.stderr.read() if dump.stderr else ""
        # pg_waldump ends with "error ... at <end>" when -e falls inside the last record: not a failure
        if dump.returncode and "could not find" not in errors and "invalid record" not in errors:
            raise RuntimeError(errors.strip()[-300:])
        counted += [(lsn, tot, fpi, "commits") for lsn, tot, fpi, xid in pending if xid in ours]
        totals: dict[int, Counter[str]] = defaultdict(Counter)
        for lsn, tot, fpi, table in counted:
            index = next((n for n, bound in enumerate(bounds[1:]) if lsn < bound), len(phases) - 1)
            totals[index]["bytes"] += tot
            totals[index]["fpi"] += fpi
            totals[index]["records"] += 1
            totals[index]["table:" + table] += tot
        for index, phase in enumerate(phases):
            figures = totals[index]
            phase.database_bytes = figures["bytes"]
            phase.fpi_bytes = figures["fpi"]
            phase.records = figures["records"]
            phase.by_table = {
                key.removeprefix("table:"): value
                for key, value in figures.most_common()
                if key.startswith("table:")
            }

"""The view a sync is building, written page by page into a scratch SQLite file.

A sync of 100,000 blobs used to hold the whole new view, the view before, the names seen,
every blob and object row as Python objects at once (229 MB peak on a no-op, ~1.7 KB per
blob). Now each listing page's files go here (path, content hash, blob name, source number,
fetched or not) and everything that needs the whole view is a query: the blobs no longer
listed (StateDB.forget_unseen), the replaced and deleted paths and the new view itself
(StateDB.replace_view, which attaches this file), the first downloaded names.

The file is `<state>/sync.db.view-<pid>-<random>` beside the state DB, on its own
connection: a heal of the state DB (a new connection) does not lose it. No journal and no
fsync: it is scratch, removed at the end of the sync; one left by a killed process is removed
by the next sync on the node (its pid is gone).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

from node_agent.logs import get_logger

log = get_logger("sync")
PREFIX = ".view-"

_SCHEMA = """
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
CREATE TABLE v(path TEXT PRIMARY KEY, hash TEXT NOT NULL, name TEXT, n INTEGER NOT NULL,
               fetched INTEGER NOT NULL) WITHOUT ROWID;
"""

Row = tuple[str, str, str | None, int, int]  # path, hash, blob name, source number, fetched


class NewView:
    def __init__(self, state_db: Path) -> None:
        _remove_stale(state_db)
        self.path = state_db.with_name(
            f"{state_db.name}{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.executescript(_SCHEMA)
        self._rows: list[Row] = []

    def add(self, path: str, h: str, name: str | None, n: int, *, fetched: bool) -> None:
        self._rows.append((path, h, name, n, int(fetched)))

    def flush(self) -> None:
        """Write the rows added since the last flush (one page)."""
        if self._rows:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR REPLACE INTO v VALUES(?,?,?,?,?)", self._rows)
            self.conn.execute("COMMIT")
            self._rows.clear()

    def count(self) -> int:
        self.flush()
        return int(self.conn.execute("SELECT count(*) FROM v").fetchone()[0])

    def paths(self) -> set[str]:
        self.flush()
        return {r[0] for r in self.conn.execute("SELECT path FROM v")}

    def fetched(self, first: int) -> list[str]:
        """The first `first` paths (sorted) that were downloaded."""
        self.flush()
        q = "SELECT path FROM v WHERE fetched ORDER BY path LIMIT ?"
        return [r[0] for r in self.conn.execute(q, (first,))]

    def close(self) -> None:
        self.conn.close()
        self.path.unlink(missing_ok=True)


def _remove_stale(state_db: Path) -> None:
    """Scratch views of processes that no longer run."""
    stale = list(state_db.parent.glob(f"{state_db.name}{PREFIX}*"))
    if not stale:
        return
    import psutil  # os.kill(pid, 0) would terminate the process on Windows

    for p in stale:
        pid = p.name[len(state_db.name) + len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            p.unlink(missing_ok=True)

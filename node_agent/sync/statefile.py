"""The state DB's file: where it is, where its objects are, and how damage is recognised
(SQLite's own answers: PRAGMA quick_check, SQLITE_CORRUPT, SQLITE_NOTADB)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class CorruptState(sqlite3.DatabaseError):
    """PRAGMA quick_check did not answer 'ok'."""


def is_corruption(e: BaseException) -> bool:
    """SQLite says the file is damaged or not a database (not: busy, locked, disk full)."""
    if isinstance(e, CorruptState):
        return True
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        return True
    text = str(e).lower()
    return "malformed" in text or "not a database" in text


def db_path(state_dir: Path) -> Path:
    return state_dir / "sync.db"


def objects_dir_for(db: Path) -> Path:
    """The content store's objects folder for a state DB at `db`: `node-agent sync` keeps
    <cache>/state/sync.db beside <cache>/objects, a node <agent>/state/sync.db beside
    <agent>/cache/objects."""
    beside = db.parent.parent / "objects"
    return beside if beside.is_dir() else db.parent.parent / "cache" / "objects"


def quick_check(path: Path) -> str | None:
    """None when the DB at `path` passes PRAGMA quick_check, else what SQLite said. Opened
    read-only: the doctor reports, the next sync heals."""
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        return str(e)
    try:
        answer = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()
    return None if answer == ["ok"] else "; ".join(answer[:3])


class Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error (the first error is kept)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, t: object, e: object, tb: object) -> None:
        if t is None:
            self.conn.execute("COMMIT")
            return
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:  # the first error (e.g. corruption) is the one to report
            pass


PAGE = 500  # names per `IN (...)`: under SQLite's oldest limit of 999 variables


def pages(values: list[T]) -> list[list[T]]:
    return [values[i : i + PAGE] for i in range(0, len(values), PAGE)]


def marks(values: list[T]) -> str:
    return ",".join("?" * len(values))

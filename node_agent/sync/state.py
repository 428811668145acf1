"""The node's sync state database (SQLite, under BatchNode.state_dir).

Tables:
- objects: content in the store (sha256 hash, size, mtime_ns as written, Content-MD5, last use)
- blobs: what a remote blob held when last synced (source, name, size, etag, md5, hash)
- views: the files of each job's view (job, path, hash)
- jobs: last use per job and the manifest its view was built from (if any)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects(
    hash TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    md5 BLOB, last_used REAL NOT NULL);
CREATE INDEX IF NOT EXISTS objects_md5 ON objects(md5, size);
CREATE TABLE IF NOT EXISTS blobs(
    src TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    md5 BLOB, hash TEXT NOT NULL, PRIMARY KEY(src, name));
CREATE TABLE IF NOT EXISTS views(
    job TEXT NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY(job, path));
CREATE INDEX IF NOT EXISTS views_hash ON views(hash);
CREATE TABLE IF NOT EXISTS jobs(
    job TEXT PRIMARY KEY, last_used REAL NOT NULL, manifest TEXT);
"""


@dataclass(frozen=True)
class ObjectRow:
    hash: str
    size: int
    mtime_ns: int
    md5: bytes | None
    last_used: float


@dataclass(frozen=True)
class BlobRow:
    size: int
    etag: str
    md5: bytes | None
    hash: str


class StateDB:
    """One connection, used from one thread; several processes may share the file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), timeout=120, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=120000")
        for attempt in range(200):  # a concurrent first open can answer "locked" at once
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError:
                if attempt == 199:
                    raise
                time.sleep(0.05)
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self.conn.close()

    # --- reads -------------------------------------------------------------
    def all_blobs(self, src: str, prefix: str) -> dict[str, BlobRow]:
        rows = self.conn.execute(
            "SELECT name, size, etag, md5, hash FROM blobs WHERE src=? AND substr(name,1,?)=?",
            (src, len(prefix), prefix),
        )
        return {r[0]: BlobRow(r[1], r[2], r[3], r[4]) for r in rows}

    def all_objects(self) -> dict[str, ObjectRow]:
        rows = self.conn.execute("SELECT hash, size, mtime_ns, md5, last_used FROM objects")
        return {r[0]: ObjectRow(*r) for r in rows}

    def object_by_md5(self, md5: bytes, size: int) -> str | None:
        row = self.conn.execute(
            "SELECT hash FROM objects WHERE md5=? AND size=? LIMIT 1", (md5, size)
        ).fetchone()
        return str(row[0]) if row else None

    def view(self, job: str) -> dict[str, str]:
        rows = self.conn.execute("SELECT path, hash FROM views WHERE job=?", (job,))
        return {r[0]: r[1] for r in rows}

    def job_manifest(self, job: str) -> str | None:
        row = self.conn.execute("SELECT manifest FROM jobs WHERE job=?", (job,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def jobs(self) -> dict[str, float]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT job, last_used FROM jobs")}

    def hashes_of_jobs(self, jobs: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for job in jobs:
            out.update(
                h for (h,) in self.conn.execute("SELECT hash FROM views WHERE job=?", (job,))
            )
        return out

    # --- writes (each call is one transaction) -----------------------------
    def record(
        self,
        objects: Iterable[tuple[str, int, int, bytes | None]],
        blobs: Iterable[tuple[str, str, int, str, bytes | None, str]],
    ) -> None:
        now = time.time()
        with self._tx():
            self.conn.executemany(
                "INSERT OR REPLACE INTO objects(hash,size,mtime_ns,md5,last_used) VALUES(?,?,?,?,?)",
                [(h, s, m, md5, now) for h, s, m, md5 in objects],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO blobs(src,name,size,etag,md5,hash) VALUES(?,?,?,?,?,?)",
                list(blobs),
            )

    def forget_objects(self, hashes: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM objects WHERE hash=?", [(h,) for h in hashes])

    def forget_blobs(self, src: str, names: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany(
                "DELETE FROM blobs WHERE src=? AND name=?", [(src, n) for n in names]
            )

    def forget_blobs_with_hashes(self, hashes: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM blobs WHERE hash=?", [(h,) for h in hashes])

    def set_view(self, job: str, files: dict[str, str], manifest: str | None) -> None:
        """Replace the job's view and mark the job and its objects used now."""
        now = time.time()
        with self._tx():
            self.conn.execute("DELETE FROM views WHERE job=?", (job,))
            self.conn.executemany(
                "INSERT INTO views(job,path,hash) VALUES(?,?,?)",
                [(job, p, h) for p, h in files.items()],
            )
            self.conn.execute(
                "INSERT OR REPLACE INTO jobs(job,last_used,manifest) VALUES(?,?,?)",
                (job, now, manifest),
            )
            self.conn.execute(
                "UPDATE objects SET last_used=? WHERE hash IN (SELECT hash FROM views WHERE job=?)",
                (now, job),
            )

    def forget_job(self, job: str) -> None:
        with self._tx():
            self.conn.execute("DELETE FROM views WHERE job=?", (job,))
            self.conn.execute("DELETE FROM jobs WHERE job=?", (job,))

    def _tx(self) -> _Tx:
        return _Tx(self.conn)


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, t: object, e: object, tb: object) -> None:
        self.conn.execute("COMMIT" if t is None else "ROLLBACK")


def db_path(state_dir: Path) -> Path:
    return state_dir / "sync.db"

"""The node's sync state database (SQLite, under BatchNode.state_dir).

Tables:
- objects: content in the store (sha256 hash, size, mtime_ns as written, Content-MD5, last use)
- blobs: what a remote blob held when last synced (source, name, size, etag, md5, hash)
- views: the files of each job's view (job, path, hash)
- jobs: last use per job and the manifest its view was built from (if any)

A DB that SQLite reports as corrupt (at open: PRAGMA quick_check; later: "database disk
image is malformed", "file is not a database") heals itself: it is moved aside as
`sync.db.corrupt-<utc time>` (with its -wal/-shm, kept for inspection) and rebuilt from
the objects on disk, each re-hashed (node_agent.sync.cache.rebuild). The blob and view rows are
lost: the next sync lists and matches again (by Content-MD5 where the blob has one).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from filelock import FileLock

from node_agent.logs import get_logger

log = get_logger("sync")
P = ParamSpec("P")
R = TypeVar("R")

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


def _healing(
    fn: Callable[Concatenate[StateDB, P], R],
) -> Callable[Concatenate[StateDB, P], R]:
    """A call that meets corruption heals the DB and runs once more on the rebuilt one."""

    @functools.wraps(fn)
    def call(self: StateDB, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            if not is_corruption(e):
                raise
            self.heal(str(e))
            return fn(self, *args, **kwargs)

    return call


class StateDB:
    """One connection, used from one thread; several processes may share the file.

    Opening runs PRAGMA quick_check (about 6 ms at 10,000 objects, 55 ms at 100,000 objects
    + blobs + view rows: a few percent of what a sync reads from the DB anyway) under a
    node-wide lock, so a corrupt DB is healed before any sync uses it and no process opens
    a DB that is being rebuilt. `objects_dir` is the content store's objects folder; by
    default it is found beside the state folder (node: <agent>/cache/objects for
    <agent>/state/sync.db; `node-agent sync`: <cache>/objects for <cache>/state/sync.db)."""

    def __init__(
        self,
        path: Path,
        objects_dir: Path | None = None,
        *,
        heal: bool = True,
        lock_timeout_s: float = -1,
    ) -> None:
        """`heal=False` (job release's cache trim: a rebuild re-hashes the whole cache and
        could outlast the release's time limit) raises CorruptState instead of healing,
        leaving it to the next job prep; `lock_timeout_s` bounds the wait for a heal another
        process is doing (filelock.Timeout, an OSError)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.objects_dir = objects_dir or objects_dir_for(path)
        self.healed: Path | None = None  # where the corrupt DB was moved, when it was
        self._heal = heal
        self._lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=lock_timeout_s)
        with self._lock:
            try:
                self._open()
            except sqlite3.DatabaseError as e:
                if not is_corruption(e):
                    raise
                self._heal_locked(str(e))

    def _open(self) -> None:
        conn = sqlite3.connect(str(self.path), timeout=120, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=120000")
            for attempt in range(200):  # a concurrent first open can answer "locked" at once
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(_SCHEMA)
                    break
                except sqlite3.OperationalError as e:
                    if attempt == 199 or is_corruption(e):
                        raise
                    time.sleep(0.05)
            conn.execute("PRAGMA synchronous=NORMAL")
            answer = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
            if answer != ["ok"]:
                raise CorruptState(f"quick_check: {'; '.join(answer[:3])}")
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self._ino = os.stat(self.path).st_ino

    def heal(self, reason: str) -> None:
        """Move the corrupt DB aside and rebuild it (unless another process just did)."""
        self.conn.close()
        with self._lock:
            try:
                if os.stat(self.path).st_ino != self._ino:
                    self._open()  # healed by another process while this one used the old file
                    return
            except FileNotFoundError:
                pass
            except sqlite3.DatabaseError as e:
                if not is_corruption(e):
                    raise
            self._heal_locked(reason)

    def _heal_locked(self, reason: str) -> None:
        from node_agent.sync.cache import move_aside, rebuild

        if not self._heal:
            raise CorruptState(
                f"sync state {self.path} is corrupt ({reason}); the next job prep heals it"
            )

        aside = move_aside(self.path)
        log.warning(
            "sync state %s is corrupt (%s): moved aside as %s (kept for inspection); "
            "rebuilding it from the objects in %s",
            self.path,
            reason,
            aside.name,
            self.objects_dir,
        )
        self._open()
        r = rebuild(self.conn, self.objects_dir)
        self.healed = aside
        log.warning(
            "sync state rebuilt: %d object(s) re-verified (%.1f MB in %.1f s), %d dropped as "
            "damaged%s; blob and view records were lost: the next sync lists again and "
            "fetches only what it cannot match",
            r.kept,
            r.bytes / 1e6,
            r.seconds,
            len(r.dropped),
            f" ({', '.join(h[:12] for h in r.dropped[:5])})" if r.dropped else "",
        )

    def close(self) -> None:
        self.conn.close()

    # --- reads -------------------------------------------------------------
    @_healing
    def all_blobs(self, src: str, prefix: str) -> dict[str, BlobRow]:
        rows = self.conn.execute(
            "SELECT name, size, etag, md5, hash FROM blobs WHERE src=? AND substr(name,1,?)=?",
            (src, len(prefix), prefix),
        )
        return {r[0]: BlobRow(r[1], r[2], r[3], r[4]) for r in rows}

    @_healing
    def all_objects(self) -> dict[str, ObjectRow]:
        rows = self.conn.execute("SELECT hash, size, mtime_ns, md5, last_used FROM objects")
        return {r[0]: ObjectRow(*r) for r in rows}

    @_healing
    def object_by_md5(self, md5: bytes, size: int) -> str | None:
        row = self.conn.execute(
            "SELECT hash FROM objects WHERE md5=? AND size=? LIMIT 1", (md5, size)
        ).fetchone()
        return str(row[0]) if row else None

    @_healing
    def view(self, job: str) -> dict[str, str]:
        rows = self.conn.execute("SELECT path, hash FROM views WHERE job=?", (job,))
        return {r[0]: r[1] for r in rows}

    @_healing
    def job_manifest(self, job: str) -> str | None:
        row = self.conn.execute("SELECT manifest FROM jobs WHERE job=?", (job,)).fetchone()
        return str(row[0]) if row and row[0] else None

    @_healing
    def jobs(self) -> dict[str, float]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT job, last_used FROM jobs")}

    @_healing
    def hashes_of_jobs(self, jobs: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for job in jobs:
            out.update(
                h for (h,) in self.conn.execute("SELECT hash FROM views WHERE job=?", (job,))
            )
        return out

    # --- writes (each call is one transaction) -----------------------------
    @_healing
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

    @_healing
    def forget_objects(self, hashes: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM objects WHERE hash=?", [(h,) for h in hashes])

    @_healing
    def forget_blobs(self, src: str, names: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany(
                "DELETE FROM blobs WHERE src=? AND name=?", [(src, n) for n in names]
            )

    @_healing
    def forget_blobs_with_hashes(self, hashes: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM blobs WHERE hash=?", [(h,) for h in hashes])

    @_healing
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

    @_healing
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
        if t is None:
            self.conn.execute("COMMIT")
            return
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:  # the first error (e.g. corruption) is the one to report
            pass


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

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, NamedTuple, ParamSpec, TypeVar

from filelock import FileLock

from node_agent.logs import get_logger
from node_agent.sync.statefile import (
    CorruptState,
    Tx,
    db_path,
    is_corruption,
    marks,
    objects_dir_for,
    pages,
    quick_check,
)

log = get_logger("sync")
__all__ = [
    "BlobRow",
    "CorruptState",
    "ObjectRow",
    "StateDB",
    "db_path",
    "is_corruption",
    "objects_dir_for",
    "quick_check",
]
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


class ObjectRow(NamedTuple):  # a tuple: made per row read, ~4x cheaper than a dataclass
    hash: str
    size: int
    mtime_ns: int
    md5: bytes | None
    last_used: float


class BlobRow(NamedTuple):
    size: int
    etag: str
    md5: bytes | None
    hash: str


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
    # A sync reads the rows of one listing page at a time (`... IN (...)`, at most PAGE
    # names), never a whole source's: memory stays a page whatever the number of blobs.
    @_healing
    def blobs_for(self, src: str, names: list[str]) -> dict[str, BlobRow]:
        """The recorded rows of these blob names of `src`."""
        out: dict[str, BlobRow] = {}
        for part in pages(names):
            rows = self.conn.execute(
                "SELECT name, size, etag, md5, hash FROM blobs WHERE src=? AND name IN "
                f"({marks(part)})",
                (src, *part),
            )
            out.update((r[0], BlobRow._make(r[1:])) for r in rows)
        return out

    @_healing
    def objects_for(self, hashes: list[str]) -> dict[str, ObjectRow]:
        """The recorded rows of these objects (the ones the store has)."""
        out: dict[str, ObjectRow] = {}
        for part in pages(hashes):
            rows = self.conn.execute(
                "SELECT hash, size, mtime_ns, md5, last_used FROM objects WHERE hash IN "
                f"({marks(part)})",
                part,
            )
            out.update((r[0], ObjectRow._make(r)) for r in rows)
        return out

    @_healing
    def hashes_by_md5(self, keys: list[tuple[bytes, int]]) -> dict[tuple[bytes, int], str]:
        """Objects holding content with these (Content-MD5, size)."""
        want = set(keys)
        out: dict[tuple[bytes, int], str] = {}
        for part in pages(sorted({k[0] for k in want})):
            rows = self.conn.execute(
                f"SELECT md5, size, hash FROM objects WHERE md5 IN ({marks(part)})", part
            )
            out.update(((r[0], r[1]), r[2]) for r in rows if (r[0], r[1]) in want)
        return out

    @_healing
    def all_objects(self) -> dict[str, ObjectRow]:
        rows = self.conn.execute("SELECT hash, size, mtime_ns, md5, last_used FROM objects")
        return {r[0]: ObjectRow(*r) for r in rows}

    @_healing
    def view_objects(self, job: str) -> list[tuple[str, ObjectRow | None]]:
        """Each file of the job's view with its object's row (None: not in the store)."""
        rows = self.conn.execute(
            "SELECT v.path, o.hash, o.size, o.mtime_ns, o.md5, o.last_used FROM views v "
            "LEFT JOIN objects o ON o.hash = v.hash WHERE v.job=?",
            (job,),
        )
        return [(r[0], ObjectRow(*r[1:]) if r[1] is not None else None) for r in rows]

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
    def forget_unseen(self, src: str, prefix: str, seen: Path, n: int) -> int:
        """Forget the blobs of `src` under `prefix` that source `n` of the new view `seen`
        (a NewView file) did not list; returns how many."""
        with self._attached(seen):
            with self._tx():
                cur = self.conn.execute(
                    "DELETE FROM blobs WHERE src=? AND substr(name,1,?)=? AND name NOT IN "
                    "(SELECT name FROM nv.v WHERE n=? AND name IS NOT NULL)",
                    (src, len(prefix), prefix, n),
                )
        return cur.rowcount

    @_healing
    def replace_view(
        self, job: str, new: Path, manifest: str | None, names: int
    ) -> tuple[list[str], int, list[str], int]:
        """Make the NewView file `new` the job's view (and mark the job and its objects used
        now); returns the first `names` replaced paths (same path, other content), how many,
        the first `names` deleted paths and how many: computed in SQL, never held whole."""
        now = time.time()
        with self._attached(new):
            with self._tx():
                replaced_q = (
                    "FROM nv.v n JOIN views o ON o.job=? AND o.path=n.path WHERE o.hash<>n.hash"
                )
                deleted_q = "FROM views o WHERE o.job=? AND o.path NOT IN (SELECT path FROM nv.v)"
                out = []
                for q in (replaced_q, deleted_q):
                    path = "n.path" if q is replaced_q else "o.path"
                    count = self.conn.execute(f"SELECT count(*) {q}", (job,)).fetchone()[0]
                    first = (
                        [
                            r[0]
                            for r in self.conn.execute(
                                f"SELECT {path} {q} ORDER BY {path} LIMIT ?", (job, names)
                            )
                        ]
                        if count
                        else []
                    )
                    out.append((first, int(count)))
                # only the rows that differ are written: a no-op writes none, 1 % changed 1 %
                if out[1][1]:
                    self.conn.execute(
                        "DELETE FROM views WHERE job=? AND path NOT IN (SELECT path FROM nv.v)",
                        (job,),
                    )
                self.conn.execute(
                    "INSERT OR REPLACE INTO views(job,path,hash) SELECT ?, n.path, n.hash "
                    "FROM nv.v n LEFT JOIN views o ON o.job=? AND o.path=n.path "
                    "WHERE o.path IS NULL OR o.hash<>n.hash",
                    (job, job),
                )
                self.conn.execute(
                    "INSERT OR REPLACE INTO jobs(job,last_used,manifest) VALUES(?,?,?)",
                    (job, now, manifest),
                )
                self.conn.execute(
                    "UPDATE objects SET last_used=? WHERE hash IN "
                    "(SELECT hash FROM views WHERE job=?)",
                    (now, job),
                )
        (replaced, n_replaced), (deleted, n_deleted) = out
        return replaced, n_replaced, deleted, n_deleted

    @contextmanager
    def _attached(self, scratch: Path) -> Iterator[None]:
        """A NewView file attached as `nv` for one statement group (ATTACH is per
        connection: a heal's new connection attaches it again when the call is re-run)."""
        self.conn.execute("ATTACH DATABASE ? AS nv", (str(scratch),))
        try:
            yield
        finally:
            try:
                self.conn.execute("DETACH DATABASE nv")
            except sqlite3.Error:  # the connection is gone (a heal); the first error counts
                pass

    @_healing
    def forget_blobs_with_hashes(self, hashes: Iterable[str]) -> None:
        with self._tx():
            self.conn.executemany("DELETE FROM blobs WHERE hash=?", [(h,) for h in hashes])

    @_healing
    def forget_job(self, job: str) -> None:
        with self._tx():
            self.conn.execute("DELETE FROM views WHERE job=?", (job,))
            self.conn.execute("DELETE FROM jobs WHERE job=?", (job,))

    def _tx(self) -> Tx:
        return Tx(self.conn)

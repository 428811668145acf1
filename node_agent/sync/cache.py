"""Keeping the node's content store honest: trimming it to a budget (least recently used
first, never in-use content), re-verifying every object by its hash (`doctor
--verify-cache`) and rebuilding the state DB from the objects when the DB is corrupt.

What the sync itself verifies: every download is hashed as it is written (sha256, and the
blob's Content-MD5 when it has one) before it becomes an object; an object already in the
store is trusted when its size and mtime are what the state DB recorded (a full re-hash on
every job prep would read the whole cache). A change that keeps both (a byte flipped on a
bad disk, a write with the mtime restored) is found by `verify_cache` only.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from node_agent.batchenv import BatchNode
from node_agent.logs import get_logger
from node_agent.sync.state import StateDB, db_path
from node_agent.sync.store import ContentStore

log = get_logger("sync")
_HASH = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass
class TrimSummary:
    objects_before: int = 0
    bytes_before: int = 0
    evicted: int = 0
    bytes_evicted: int = 0
    bytes_freed: int = 0  # evicted content no job folder still links to
    protected: int = 0
    bytes_after: int = 0


def trim_cache(node: BatchNode, budget_bytes: int, in_use_jobs: set[str]) -> TrimSummary:
    """Evict least recently used content until the store fits `budget_bytes`.

    Content referenced by a job in `in_use_jobs` is never evicted, even if the
    budget cannot be met. Jobs' last use is recorded by each sync.
    """
    cstore = ContentStore(node.cache_dir)
    # never heal here: a rebuild re-hashes the whole cache (release has a time limit)
    db = StateDB(db_path(node.state_dir), cstore.objects, heal=False, lock_timeout_s=120)
    try:
        objects = db.all_objects()
        protected = db.hashes_of_jobs(in_use_jobs)
        s = TrimSummary(len(objects), sum(o.size for o in objects.values()))
        total = s.bytes_before
        evicted: list[str] = []
        for obj in sorted(objects.values(), key=lambda o: (o.last_used, o.hash)):
            if total <= budget_bytes:
                break
            if obj.hash in protected:
                s.protected += 1
                continue
            path = cstore.object_path(obj.hash)
            try:
                links = os.stat(path).st_nlink
                path.unlink()
            except FileNotFoundError:
                links = 1
            evicted.append(obj.hash)
            total -= obj.size
            s.evicted += 1
            s.bytes_evicted += obj.size
            if links <= 1:
                s.bytes_freed += obj.size
        db.forget_objects(evicted)
        db.forget_blobs_with_hashes(evicted)
        s.bytes_after = total
        return s
    finally:
        db.close()


def cache_budget_mb(node: BatchNode, spec_budget_mb: int | None) -> int | None:
    """The shared cache budget: the job spec's policies.cache_budget_mb, else the one in the
    pool config the start task applied (state/pool-config.json), else none."""
    if spec_budget_mb is not None:
        return spec_budget_mb
    from node_agent.nodestate import kept_pool_config

    cfg = kept_pool_config(node)
    return cfg.cache_budget_mb if cfg is not None else None


def jobs_on_node(node: BatchNode) -> set[str]:
    """Jobs whose per-job folder is on the node: prepared and not yet released."""
    jobs = node.agent_dir / "jobs"
    return {p.name for p in jobs.iterdir() if p.is_dir()} if jobs.is_dir() else set()


def trim_when_idle(
    node: BatchNode, budget_bytes: int, in_use_jobs: set[str], wait_s: float = 120.0
) -> TrimSummary | None:
    """trim_cache while holding every storage lock of the cache, so no job prep is linking
    content while it is evicted; None when a job prep kept a lock for `wait_s`."""
    with ExitStack() as held:
        if not _hold_storage_locks(held, ContentStore(node.cache_dir).locks, wait_s):
            return None
        return trim_cache(node, budget_bytes, in_use_jobs)


def _hold_storage_locks(held: ExitStack, locks: Path, wait_s: float) -> bool:
    """Take every storage lock of the cache (no job prep links content meanwhile); False
    when one stayed held for `wait_s`."""
    deadline = time.monotonic() + wait_s
    for path in sorted(locks.glob("*.lock")):
        try:
            held.enter_context(FileLock(str(path), timeout=max(0.0, deadline - time.monotonic())))
        except Timeout:
            return False
    return True


# --- objects on disk ------------------------------------------------------------------------


def iter_objects(objects_dir: Path) -> Iterator[tuple[str, str]]:
    """(hash, path) of every entry named as an object: <objects>/<h[:2]>/<h>."""
    try:
        subs = sorted(os.scandir(objects_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for sub in subs:
        if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
            continue
        for e in sorted(os.scandir(sub.path), key=lambda e: e.name):
            if _HASH.fullmatch(e.name) and e.name[:2] == sub.name:
                yield e.name, e.path


def hash_object(path: str, *, md5: bool = False) -> tuple[str, bytes | None, int, int] | None:
    """(sha256 hex, md5 when asked, size, mtime_ns) of a regular file, read without following
    a link; None when it is not a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as e:
        if os.path.islink(path):
            return None
        raise e
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        sha, m = hashlib.sha256(), hashlib.md5() if md5 else None
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            sha.update(view[:n])
            if m is not None:
                m.update(view[:n])
    return sha.hexdigest(), m.digest() if m else None, st.st_size, st.st_mtime_ns


def _drop_entry(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a folder named like an object: not ours to remove
        log.warning("cannot drop %s from the content store: %s", path, e.strerror)


# --- rebuilding the state DB --------------------------------------------------------------


def move_aside(db: Path) -> Path:
    """Rename a corrupt DB (and its -wal/-shm) to <name>.corrupt-<utc time>; returns it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = db.with_name(f"{db.name}.corrupt-{stamp}")
    n = 1
    while aside.exists() or Path(f"{aside}-wal").exists():
        aside = db.with_name(f"{db.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        try:
            os.replace(f"{db}{suffix}", f"{aside}{suffix}")
        except FileNotFoundError:
            pass
    return aside


@dataclass
class Rebuilt:
    kept: int = 0
    bytes: int = 0
    seconds: float = 0.0
    dropped: list[str] = field(default_factory=list)


def rebuild(conn: sqlite3.Connection, objects_dir: Path) -> Rebuilt:
    """Record every object whose content hashes to its name (with its md5, so the next sync
    matches blobs by Content-MD5 instead of fetching them); drop the others."""
    t0, now = time.monotonic(), time.time()
    r = Rebuilt()
    rows: list[tuple[str, int, int, bytes | None, float]] = []

    def flush() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR REPLACE INTO objects(hash,size,mtime_ns,md5,last_used) VALUES(?,?,?,?,?)",
            rows,
        )
        conn.execute("COMMIT")
        rows.clear()

    for h, path in iter_objects(objects_dir):
        try:
            got = hash_object(path, md5=True)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("cannot read cached object %s: %s: dropping it", h[:12], e.strerror)
            got = None
        if got is None or got[0] != h:
            _drop_entry(path)
            r.dropped.append(h)
            continue
        rows.append((h, got[2], got[3], got[1], now))
        r.kept += 1
        r.bytes += got[2]
        if len(rows) >= 500:
            flush()
    if rows:
        flush()
    r.seconds = time.monotonic() - t0
    return r


# --- doctor --verify-cache ----------------------------------------------------------------


@dataclass
class Verified:
    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    bad: dict[str, str] = field(default_factory=dict)  # hash -> what is wrong
    dropped: list[str] = field(default_factory=list)
    not_dropped: str = ""  # why the bad ones are still there

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def verify_cache(cache_dir: Path, state_dir: Path, wait_s: float = 120.0) -> Verified:
    """Hash every object of the store; drop the ones whose content is not their hash (and
    their state rows), so the next sync fetches them again. Hashing runs without locks; the
    drop holds every storage lock (no job prep links an object while it goes) and hashes a
    bad object once more first (a sync may have fetched it again meanwhile)."""
    v = Verified()
    t0 = time.monotonic()
    for h, path in iter_objects(cache_dir / "objects"):
        problem = _problem(h, path, v)
        if problem:
            v.bad[h] = problem
    v.seconds = time.monotonic() - t0
    if not v.bad:
        return v
    with ExitStack() as held:
        if not _hold_storage_locks(held, cache_dir / "locks", wait_s):
            v.not_dropped = f"a job prep held the cache for {wait_s:.0f} s: run it again"
            return v
        for h in v.bad:
            path = str(cache_dir / "objects" / h[:2] / h)
            if _problem(h, path, Verified()):
                _drop_entry(path)
                v.dropped.append(h)
        if v.dropped:
            db = StateDB(db_path(state_dir), cache_dir / "objects")
            try:
                db.forget_objects(v.dropped)
                db.forget_blobs_with_hashes(v.dropped)
            finally:
                db.close()
    return v


def _problem(h: str, path: str, v: Verified) -> str:
    try:
        got = hash_object(path)
    except FileNotFoundError:
        return ""  # evicted or dropped meanwhile
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    v.objects += 1
    if got is None:
        return "is not a regular file"
    v.bytes += got[2]
    return "" if got[0] == h else f"content hashes to {got[0][:16]}"

"""`node-agent cache ls`: the shared cache's objects (named by sha256) mapped back to the
asset paths, jobs and blobs that use them, read from the sync state DB (opened read-only:
listing never heals, locks or changes it)."""

from __future__ import annotations

import fnmatch
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from node_agent.batchenv import BatchNode
from node_agent.errors import HealthError
from node_agent.sync.progress import format_bytes
from node_agent.sync.state import db_path


@dataclass
class CacheEntry:
    path: str  # the asset's path in a job's view (or the blob name when no view holds it)
    object: str  # sha256, the object's name in cache/objects/<2>/<hash>
    size: int
    last_used: float | None
    jobs: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)  # <account url>/<container>/<name>
    on_disk: bool = True


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise HealthError(f"{path}: cannot open: {e}") from None


def cache_entries(node: BatchNode) -> list[CacheEntry]:
    """One entry per (asset path, object): an object two jobs see at the same path is one
    entry naming both; objects no view holds are listed by their blob name."""
    path = db_path(node.state_dir)
    if not path.exists():
        return []
    conn = _connect(path)
    try:
        objects = {
            h: (size, used)
            for h, size, used in conn.execute("SELECT hash, size, last_used FROM objects")
        }
        views = list(conn.execute("SELECT job, path, hash FROM views ORDER BY path, job"))
        blobs: dict[str, list[str]] = {}
        for src, name, h in conn.execute("SELECT src, name, hash FROM blobs ORDER BY name"):
            blobs.setdefault(h, []).append(f"{src}/{name}")
    except sqlite3.DatabaseError as err:
        raise HealthError(
            f"{path}: {err} (node-agent doctor checks it; the next job prep rebuilds it)"
        ) from None
    finally:
        conn.close()
    objects_dir = node.cache_dir / "objects"
    entries: dict[tuple[str, str], CacheEntry] = {}
    for job, rel, h in views:
        size, used = objects.get(h, (0, None))
        e = entries.get((rel, h))
        if e is None:
            e = entries[(rel, h)] = CacheEntry(rel, h, size, used, blobs=blobs.get(h, []))
        e.jobs.append(job)
    in_views = {h for _, _, h in views}
    for h, (size, used) in objects.items():
        if h not in in_views:
            names = blobs.get(h, [])
            shown = names[0].rsplit("/", 1)[-1] if names else "(no job view)"
            entries[(shown, h)] = CacheEntry(shown, h, size, used, blobs=names)
    out = sorted(entries.values(), key=lambda e: (e.path, e.object))
    for e in out:
        e.on_disk = (objects_dir / e.object[:2] / e.object).is_file()
    return out


def select(entries: list[CacheEntry], job: str | None, glob: str | None) -> list[CacheEntry]:
    if job is not None:
        entries = [e for e in entries if job in e.jobs]
    if glob is not None:
        entries = [
            e
            for e in entries
            if fnmatch.fnmatchcase(e.path, glob)
            or any(fnmatch.fnmatchcase(b.rsplit("/", 1)[-1], glob) for b in e.blobs)
        ]
    return entries


def as_json(entries: list[CacheEntry]) -> dict[str, object]:
    objects = {e.object: e.size for e in entries}
    return {
        "entries": [asdict(e) for e in entries],
        "files": len(entries),
        "objects": len(objects),
        "bytes": sum(objects.values()),
    }


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + "Z" if t else "-"


def as_text(entries: list[CacheEntry], node: BatchNode) -> str:
    if not entries:
        return f"(nothing cached in {node.cache_dir} matches)"
    jobs_w = max(4, *(len(",".join(e.jobs) or "-") for e in entries))
    lines = [f"{'SIZE':>9}  {'LAST USE':<17}  {'OBJECT':<12}  {'JOBS':<{jobs_w}}  PATH"]
    for e in entries:
        jobs = ",".join(e.jobs) or "-"
        gone = "  (object missing on disk)" if not e.on_disk else ""
        lines.append(
            f"{format_bytes(e.size):>9}  {_when(e.last_used):<17}  {e.object[:12]}  "
            f"{jobs:<{jobs_w}}  {e.path}{gone}"
        )
    doc = as_json(entries)
    shared = sum(1 for e in entries if len(e.jobs) > 1)
    lines.append(
        f"{doc['files']} file(s), {doc['objects']} object(s), "
        f"{format_bytes(int(str(doc['bytes'])))} in {node.cache_dir / 'objects'}; "
        f"{shared} shared by several jobs (--json for full object ids and blob names)"
    )
    return "\n".join(lines)

"""The node's content-addressed store and the per-job views made of hard links into it.

Objects live at <cache>/objects/<h[:2]>/<sha256>, read-only. New content is written
to <cache>/tmp/<pid>-<random>.part (same filesystem), verified, then renamed into
place. A job's view links each path to its object; where the filesystem cannot
link, the object is copied.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from pathlib import Path

from node_agent.sync.state import ObjectRow

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class ContentStore:
    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir
        self.objects = cache_dir / "objects"
        self.tmp = cache_dir / "tmp"
        self.locks = cache_dir / "locks"
        self._objects = str(self.objects)
        for d in (self.objects, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)

    def object_path(self, h: str) -> Path:
        return self.objects / h[:2] / h

    def obj(self, h: str) -> str:
        """object_path as a string (hot path: no pathlib)."""
        return f"{self._objects}/{h[:2]}/{h}"

    def tmp_path(self) -> Path:
        return self.tmp / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.part"

    def clean_stale_tmp(self) -> int:
        """Remove temporary files left by processes that no longer run."""
        removed = 0
        for p in self.tmp.glob("*.part"):
            pid = p.name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def adopt(self, tmp: Path, h: str) -> tuple[Path, int]:
        """Make a verified temporary file the object `h`; returns its path and mtime_ns."""
        os.chmod(tmp, READ_ONLY)
        dest = self.object_path(h)
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp, dest)
        return dest, os.stat(dest).st_mtime_ns

    def intact(self, row: ObjectRow) -> os.stat_result | None:
        """The object's stat when it is as the state DB recorded it, else None."""
        try:
            st = os.stat(self.obj(row.hash))
        except FileNotFoundError:
            return None
        if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
            return None
        return st

    def drop(self, h: str) -> None:
        self.object_path(h).unlink(missing_ok=True)


def place(obj: str, obj_stat: os.stat_result, target: str) -> bool:
    """Make `target` the object (hard link, else copy); False when it already was."""
    try:
        st = os.lstat(target)
        if st.st_ino == obj_stat.st_ino and st.st_dev == obj_stat.st_dev:
            return False
    except FileNotFoundError:
        pass
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name[:200]}.{uuid.uuid4().hex[:8]}.link")
    try:
        os.link(obj, tmp)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        try:
            shutil.copyfile(obj, tmp)
            os.chmod(tmp, READ_ONLY)
        except BaseException:  # a partial copy (a full disk) is not left in the view
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
    try:
        os.replace(tmp, target)
    except IsADirectoryError:
        shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return True


def prune_view(root: Path, keep: set[str]) -> int:
    """Remove files under `root` that are not in `keep` (view-relative paths), and empty folders."""
    removed = 0
    if not root.exists():
        return 0
    for dirpath, _dirs, filenames in os.walk(root, topdown=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel not in keep:
                os.unlink(os.path.join(dirpath, name))
                removed += 1
        if dirpath != str(root):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    import psutil  # os.kill(pid, 0) would terminate the process on Windows

    return bool(psutil.pid_exists(pid))

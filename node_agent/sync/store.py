"""The node's content-addressed store and the per-job views made of hard links into it.

Objects live at <cache>/objects/<h[:2]>/<sha256>, read-only. New content is written
to <cache>/tmp/<pid>-<random>.part (same filesystem; created by `open_new_tmp`: a new file
of its own, never through a link), verified, then renamed into place. A job's view links each path to its object; where the filesystem cannot
link, the object is copied.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import threading
import uuid
from pathlib import Path

from node_agent.errors import StorageError
from node_agent.logs import get_logger
from node_agent.safepath import (
    ContainmentError,
    ensure_dirs,
    own_root,
    remove_tree,
    shown,
    walk_entries,
)
from node_agent.sync.state import ObjectRow

SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # a content hash as the state DB keeps it

log = get_logger("sync")
_STALE_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.link$")

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
# A new file only (O_EXCL), never through a link at its name (O_NOFOLLOW; with O_EXCL a
# link is refused anyway, as POSIX open(2) says: "If O_CREAT and O_EXCL are set, open()
# shall fail if the file exists ... If path names a symbolic link, open() shall fail").
_NEW_FILE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def open_new_tmp(path: str | Path) -> int:
    """A descriptor for writing the new, private (0600) temporary file `path` in the cache's
    tmp folder (`ContentStore.tmp_path`), created with O_EXCL|O_NOFOLLOW. Whatever is
    already at that name is removed first, never written through: a symbolic link (its
    target untouched) or a hard link to some other file (logged), or this download's own
    earlier try. Something put back there meanwhile is a StorageError naming it."""
    try:
        return os.open(path, _NEW_FILE, 0o600)
    except FileExistsError:
        pass
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or st.st_nlink > 1:
            log.warning(
                "%s was a link planted in the cache's tmp folder: removed, not followed", path
            )
        os.unlink(path)
    except FileNotFoundError:
        pass
    try:
        return os.open(path, _NEW_FILE, 0o600)
    except FileExistsError:
        raise StorageError(
            f"temporary file {path} was put back while it was being replaced: refused, not "
            "written through"
        ) from None


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
        return Path(self.obj(h))

    def obj(self, h: str) -> str:
        """The object file of content hash `h` (hot path: no pathlib). `h` comes from the
        state DB, which can be damaged or edited: anything but a sha256 in hex (a path such
        as `../../etc/x`) is refused, never joined into a path to read, link or remove."""
        if not SHA256_HEX.fullmatch(h):
            raise ContainmentError(
                f"state DB: object hash '{shown(h[:80])}' is not a sha256: refused, nothing "
                "removed or read by it (the state DB is damaged or was edited)"
            )
        return f"{self._objects}/{h[:2]}/{h}"

    def tmp_path(self) -> Path:
        """A new random name (pid first: clean_stale_tmp); open it with open_new_tmp."""
        return self.tmp / f"{os.getpid()}-{secrets.token_hex(16)}.part"

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
        # the shard folder is the store's own: a link planted there is replaced, not followed
        ensure_dirs(self.objects, [h[:2]], replace_links=True, check_root=False)
        dest = self.object_path(h)
        os.replace(tmp, dest)
        return dest, os.stat(dest).st_mtime_ns

    def intact(self, row: ObjectRow) -> os.stat_result | None:
        """The object's stat when it is as the state DB recorded it, else None."""
        try:
            st = os.lstat(self.obj(row.hash))  # a link planted in the store is never intact
        except FileNotFoundError:
            return None
        if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
            return None
        return st

    def drop(self, h: str) -> None:
        self.object_path(h).unlink(missing_ok=True)


class ViewWriter:
    """Puts objects into one view root (a job's view, a sync destination) for one sync run,
    never through a symbolic link: each folder on a file's way is checked with lstat once
    per run (a link there is replaced by a real folder and logged; safepath.ensure_dirs),
    then remembered, so a no-op re-sync costs one lstat per file and one per folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = own_root(root)
        self._ok: set[str] = {""}  # view-relative folders verified in this run
        self._lock = threading.Lock()

    def folder(self, rel_dir: str) -> str:
        """The absolute path of the view folder `rel_dir` ('/'-separated), verified."""
        if rel_dir not in self._ok:
            with self._lock:  # the fetch threads place files too
                if rel_dir not in self._ok:
                    self._verify(rel_dir)
        return f"{self.root}/{rel_dir}" if rel_dir else self.root

    def _verify(self, rel_dir: str) -> None:
        parts = rel_dir.split("/")
        done = len(parts)
        while done > 0 and "/".join(parts[:done]) not in self._ok:
            done -= 1
        base = "/".join(parts[:done])
        ensure_dirs(
            f"{self.root}/{base}" if base else self.root,
            parts[done:],
            replace_links=True,
            check_root=False,
        )
        for i in range(done + 1, len(parts) + 1):
            self._ok.add("/".join(parts[:i]))

    def place(self, obj: str, obj_stat: os.stat_result, rel: str) -> bool:
        """Make view file `rel` the object (hard link, else copy); False when it already was.

        A symbolic link at `rel` is replaced itself (never followed) and logged; a folder
        at `rel` is removed without descending through links."""
        rel_dir, _, name = rel.rpartition("/")
        parent = self.folder(rel_dir)
        target = f"{parent}/{name}"
        try:  # lstat below verified folders: this is the view's own entry, not one elsewhere
            st: os.stat_result | None = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == obj_stat.st_ino and st.st_dev == obj_stat.st_dev:
            return False
        tmp = os.path.join(parent, f".{name[:200]}.{uuid.uuid4().hex[:8]}.link")
        _link_or_copy(obj, tmp)
        try:
            if st is not None and stat.S_ISLNK(st.st_mode):
                log.warning(
                    "replaced symbolic link '%s' (-> '%s') by the source's file: links are "
                    "never followed here, the link's target is untouched",
                    target,
                    _readlink(target),
                )
            elif st is not None and stat.S_ISDIR(st.st_mode):
                remove_tree(target)  # a folder where the source now has a file
            try:
                os.replace(tmp, target)  # renames over a link itself, never through it
            except IsADirectoryError:  # a folder made there meanwhile
                remove_tree(target)
                os.replace(tmp, target)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return True


def _link_or_copy(obj: str, tmp: str) -> None:
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


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def view_files(root: str | Path) -> tuple[dict[str, os.stat_result], list[str]]:
    """The regular files of a view (relative path -> lstat) and every other non-folder entry
    (links, sockets...), found without ever entering a linked folder."""
    files: dict[str, os.stat_result] = {}
    other: list[str] = []
    for rel, entry in walk_entries(str(root)):
        if entry.is_dir(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            files[rel] = st
        else:
            other.append(rel)
    return files, other


def prune_view(root: Path, keep: set[str], *, remove: bool = True) -> int:
    """Files and links under `root` that are not in `keep` (view-relative paths): removed
    with their emptied folders when `remove`, else only counted. Returns how many.

    Never enters a linked folder; a link is removed as a link, its target untouched."""
    found = 0
    r = str(root)
    try:
        if not stat.S_ISDIR(os.lstat(r).st_mode):
            return 0
    except FileNotFoundError:
        return 0
    for rel, entry in walk_entries(r):
        if entry.is_dir(follow_symlinks=False):
            if remove:
                try:
                    os.rmdir(entry.path)  # only when empty: a kept file keeps its folder
                except OSError:
                    pass
            continue
        if rel in keep:
            continue
        if _STALE_TMP.match(entry.name):  # our own temporary name, left by a killed run
            remove_tree(entry.path)
            continue
        found += 1
        if remove:
            remove_tree(entry.path)  # a file or a link (never followed)
    return found


def _alive(pid: int) -> bool:
    import psutil  # os.kill(pid, 0) would terminate the process on Windows

    return bool(psutil.pid_exists(pid))

"""A job's assets folder, isolated from the node's content store and from other jobs.

The sync engine builds a job's view as hard links into the content store, in
`jobs/<job>/.view/`. Tasks run elevated, so a write through a hard link would change the
cached object and every other job's file at once. Tasks therefore never see `.view/`:
they see `jobs/<job>/assets/`, which is one of

- overlay: an overlayfs mount, `.view/` the read-only lower layer and
  `.overlay/upper` (+ `.overlay/work`) the job's own writable layer. Every write, truncate,
  delete or create lands in the upper layer; the lower files are never opened for writing.
- copy: a real folder holding copies of the view's files (a reflink where the filesystem
  has one, else a byte copy); unchanged copies are kept on a re-run (same size and mtime).

`auto` (the default) tries overlay and falls back to copy, saying why in one log line.
NODE_AGENT_VIEW_ISOLATION=overlay|copy|auto forces a mode (docs/sync.md, "Job views and
isolation"). The mode and the mount are recorded in `jobs/<job>/view.json`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from node_agent.errors import AssetError, EnvironmentMissing
from node_agent.safepath import ensure_dirs, remove_tree

ENV_VAR = "NODE_AGENT_VIEW_ISOLATION"
MODES = ("auto", "overlay", "copy")
VIEW_DIR = ".view"
OVERLAY_DIR = ".overlay"
RECORD = "view.json"
_MNT_DETACH = 2
_FICLONE = 0x40049409  # linux/fs.h: share the extents of another file (btrfs, xfs, ...)


def requested_mode(env: Mapping[str, str] | None = None) -> str:
    value = (os.environ if env is None else env).get(ENV_VAR, "").strip().lower() or "auto"
    if value not in MODES:
        raise EnvironmentMissing(
            f"{ENV_VAR}='{value}' is not a view isolation mode: use one of {', '.join(MODES)}"
        )
    return value


@dataclass
class ViewRecord:
    """What job prep made of `assets/`; written to jobs/<job>/view.json."""

    mode: str
    reason: str
    mountpoint: str
    lower: str
    upper: str = ""
    work: str = ""
    copied: int = 0
    reflinked: int = 0
    kept: int = 0
    removed: int = 0
    seconds: float = 0.0
    at: float = field(default_factory=time.time)


class JobView:
    """The folders of one job's view: `.view` (lower), `.overlay`, `assets` (what tasks see)."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.lower = job_dir / VIEW_DIR
        self.assets = job_dir / "assets"
        self.overlay = job_dir / OVERLAY_DIR
        self.upper = self.overlay / "upper"
        self.work = self.overlay / "work"
        self.record_path = job_dir / RECORD

    # --- before the sync -----------------------------------------------------------
    def take_down(self, log: logging.Logger) -> None:
        """Unmount the job's overlay so the lower layer may change. A mount still in use
        is detached lazily and its layers are moved aside: a live overlay's lower layer is
        never modified (the tasks still holding it keep their old view)."""
        ensure_dirs(self.job_dir.parent, [self.job_dir.name], replace_links=True)
        try:
            busy = unmount_under(self.job_dir, log)
        except OSError as e:
            raise AssetError(
                f"job view {self.assets}: cannot unmount it ({e.strerror or e}); job prep "
                "never changes the layers of a mounted view"
            ) from None
        if busy:
            aside = f".stale-{uuid.uuid4().hex[:8]}"
            for d in (self.lower, self.overlay):
                if os.path.lexists(d):
                    os.rename(d, d.with_name(d.name + aside))
            log.warning(
                "job view %s was still in use: detached lazily, its layers moved aside (%s)",
                self.assets,
                aside,
            )
        # the layers of a lazily detached view may still be in use: job release removes them
        ensure_dirs(self.job_dir, [VIEW_DIR], replace_links=True)

    # --- after the sync ------------------------------------------------------------
    def present(self, mode: str, log: logging.Logger) -> ViewRecord:
        """Make `assets/` the job's isolated view of `.view/` (mode: auto|overlay|copy)."""
        t0 = time.monotonic()
        reason = f"forced by {ENV_VAR}" if mode != "auto" else ""
        rec: ViewRecord | None = None
        if mode in ("auto", "overlay"):
            problem = self._overlay_problem()
            if problem is None:
                try:
                    rec = self._mount_overlay()
                    reason = reason or "auto: overlayfs mounted"
                except OSError as e:
                    problem = f"mount refused: {os.strerror(e.errno or 0) or e}"
            if problem is not None:
                if mode == "overlay":
                    raise AssetError(
                        f"job view {self.assets}: overlay forced by {ENV_VAR} but {problem}"
                    )
                reason = f"auto: overlay unavailable, {problem}"
        if rec is None:
            rec = self._copy_view()
        rec.reason = reason
        rec.seconds = round(time.monotonic() - t0, 3)
        log.info(
            "view isolation: %s (%s)%s",
            rec.mode,
            reason,
            f": {rec.copied} copied, {rec.reflinked} reflinked, {rec.kept} kept"
            if rec.mode == "copy"
            else "",
        )
        from node_agent.runtime import write_atomic

        # jobs/<job>/ is writable by the job's renderers: never a predictable temporary
        # name there (a link planted at it was followed)
        write_atomic(self.record_path, json.dumps(asdict(rec), indent=2).encode("utf-8"))
        return rec

    def _overlay_problem(self) -> str | None:
        if os.name != "posix" or not Path("/proc/self/mountinfo").exists():
            return "not Linux"
        if os.geteuid() != 0:
            return "not running as root"
        for p in (self.lower, self.upper, self.work, self.assets):
            bad = set(str(p)) & {",", ":", "\\", "\n"}
            if bad:
                return f"path {p} holds {''.join(sorted(bad))!r}, which mount options cannot carry"
        return None

    def _mount_overlay(self) -> ViewRecord:
        # the upper layer is the previous run's writes: a re-run starts the tasks clean
        remove_tree(self.overlay)
        ensure_dirs(self.job_dir, [OVERLAY_DIR, "upper"], replace_links=False)
        ensure_dirs(self.job_dir, [OVERLAY_DIR, "work"], replace_links=False)
        ensure_dirs(self.job_dir, [VIEW_DIR], replace_links=True)
        self._empty_mountpoint()
        opts = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        try:  # the upper layer is scratch (cleared by every job prep): no syncs for it
            _mount("overlay", str(self.assets), "overlay", 0, opts + ",volatile")
        except OSError as e:
            if e.errno != errno.EINVAL:  # a kernel before 5.10 has no `volatile`
                raise
            _mount("overlay", str(self.assets), "overlay", 0, opts)
        return ViewRecord(
            "overlay", "", str(self.assets), str(self.lower), str(self.upper), str(self.work)
        )

    def _empty_mountpoint(self) -> None:
        """assets/ as an empty real folder (a copy-mode view or an older layout is cleared)."""
        try:
            st = os.lstat(self.assets)
            if not stat.S_ISDIR(st.st_mode):
                remove_tree(self.assets)
        except FileNotFoundError:
            pass
        ensure_dirs(self.job_dir, ["assets"], replace_links=True)
        for entry in os.scandir(self.assets):
            remove_tree(entry.path)

    def _copy_view(self) -> ViewRecord:
        remove_tree(self.overlay)
        ensure_dirs(self.job_dir, ["assets"], replace_links=True)
        rec = ViewRecord("copy", "", str(self.assets), str(self.lower))
        want_files: set[str] = set()
        want_dirs: set[str] = set()
        lower = str(self.lower)
        for dirpath, dirnames, filenames in os.walk(lower):
            rel_dir = os.path.relpath(dirpath, lower)
            parts = [] if rel_dir == "." else rel_dir.split(os.sep)
            for d in dirnames:
                want_dirs.add("/".join([*parts, d]))
            if parts:
                ensure_dirs(self.assets, parts, replace_links=True)
            for name in filenames:
                src = os.path.join(dirpath, name)
                sst = os.lstat(src)
                if not stat.S_ISREG(sst.st_mode):
                    continue
                rel = "/".join([*parts, name])
                want_files.add(rel)
                _copy_one(src, sst, os.path.join(self.assets, *parts, name), rec)
        rec.removed = _prune(self.assets, want_files, want_dirs)
        return rec


def _copy_one(src: str, sst: os.stat_result, target: str, rec: ViewRecord) -> None:
    """Make `target` a writable copy of `src`, unless it already is one (size + mtime)."""
    try:
        tst = os.lstat(target)
        if (
            stat.S_ISREG(tst.st_mode)
            and tst.st_size == sst.st_size
            and tst.st_mtime_ns == sst.st_mtime_ns
            and tst.st_ino != sst.st_ino
        ):
            rec.kept += 1
            return
        if not stat.S_ISREG(tst.st_mode):
            remove_tree(target)  # a folder, or a link (never followed)
    except FileNotFoundError:
        pass
    parent, name = os.path.split(target)
    tmp = os.path.join(parent, f".{name[:200]}.{uuid.uuid4().hex[:8]}.copy")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        with open(src, "rb") as fin:
            fd = os.open(tmp, flags, 0o644)
            with os.fdopen(fd, "wb") as fout:
                if _reflink(fin.fileno(), fout.fileno()):
                    rec.reflinked += 1
                else:
                    _copy_bytes(fin.fileno(), fout.fileno(), sst.st_size)
                    rec.copied += 1
        os.utime(tmp, ns=(sst.st_atime_ns, sst.st_mtime_ns))
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _reflink(src_fd: int, dst_fd: int) -> bool:
    if not hasattr(os, "sched_getaffinity"):  # Linux only
        return False
    import fcntl

    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
        return True
    except OSError:
        return False


def _copy_bytes(src_fd: int, dst_fd: int, size: int) -> None:
    sent = 0
    if hasattr(os, "sendfile") and os.name == "posix":
        try:
            while sent < size:
                n = os.sendfile(dst_fd, src_fd, sent, size - sent)
                if n == 0:
                    break
                sent += n
            return
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                raise
    os.lseek(src_fd, sent, os.SEEK_SET)
    while chunk := os.read(src_fd, 1 << 20):
        os.write(dst_fd, chunk)


def _prune(root: Path, files: set[str], dirs: set[str]) -> int:
    """Remove what is under `root` but not in the view (the tasks' own files, old names)."""
    removed = 0
    base = str(root)
    for dirpath, dirnames, filenames in os.walk(base, topdown=False):
        rel_dir = os.path.relpath(dirpath, base)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for name in filenames:
            if prefix + name not in files:
                os.unlink(os.path.join(dirpath, name))
                removed += 1
        for name in dirnames:  # os.walk lists a link to a folder here and never enters it
            p = os.path.join(dirpath, name)
            if prefix + name not in dirs or os.path.islink(p):
                remove_tree(p)
                removed += 1
    return removed


# --- mounts ------------------------------------------------------------------------------
def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` (links in `root` resolved, as the kernel lists them)."""
    from node_agent.mounts.platform import LinuxPlatform

    if os.name != "posix":
        return []
    r = os.path.realpath(root)
    return sorted(
        (p for p in LinuxPlatform().mount_table() if p == r or p.startswith(r + "/")),
        key=len,
        reverse=True,
    )


def unmount_under(root: Path, log: logging.Logger) -> list[str]:
    """Unmount everything mounted at or below `root`, deepest first. A busy mount is
    detached lazily (logged); returns the mounts that were busy."""
    busy = []
    for target in mounts_under(root):
        try:
            _umount(target, 0)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            _umount(target, _MNT_DETACH)
            log.warning("%s was busy (a process still uses it): detached lazily", target)
            busy.append(target)
    return busy


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    if _c().mount(
        os.fsencode(source), os.fsencode(target), fstype.encode(), flags, os.fsencode(data)
    ):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def _umount(target: str, flags: int) -> None:
    if _c().umount2(os.fsencode(target), flags):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def read_record(job_dir: Path) -> dict[str, object]:
    """jobs/<job>/view.json, or {} (no job prep of this version ran)."""
    try:
        return dict(json.loads((job_dir / RECORD).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}

"""Whether node_agent can write its folders, found by trying (mode bits say nothing about
`chattr +i`, a read-only mount or an ACL), and a write refused by the file system turned
into one line naming the folder (exit 6, the disk's code) instead of an internal error."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from node_agent.errors import DiskFullError

# EACCES/EPERM: permissions, an immutable (chattr +i) or append-only folder; EROFS: a
# read-only mount (errno(3)).
REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)
FIX = (
    "fix: make it writable (lsattr -d / chattr -i for an immutable folder, remount a "
    "read-only file system read-write, or fix its owner), then re-run; node-agent doctor "
    "checks it"
)


class NotWritableError(DiskFullError):
    """A node folder that refuses writes (exit 6: a problem of the node's disk, not a bug)."""


def _why(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.EPERM:
        return "operation not permitted (immutable or append-only: chattr +i/+a?)"
    return "permission denied"


def try_write(folder: Path) -> str | None:
    """Create, write and remove a small file in `folder`; None when that works, else why
    not. A folder that does not exist yet is not a problem (it is made when needed)."""
    if not folder.is_dir():
        return None
    probe = folder / f".node-agent-write-probe.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return _why(e) if e.errno in REFUSED else (e.strerror or str(e))
    return None


def require_writable(what: str, folders: list[Path]) -> None:
    """NotWritableError naming the first folder that refuses a write."""
    for folder in folders:
        why = try_write(folder)
        if why is not None:
            raise NotWritableError(f"cannot write to {what} folder {folder}: {why}; {FIX}")


def is_refused(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return e.errno in REFUSED
    if isinstance(e, sqlite3.OperationalError):
        low = str(e).lower()
        return "readonly database" in low or "unable to open database" in low
    return False


@contextmanager
def refused_as(what: str, where: Path) -> Iterator[None]:
    """A write refused by the file system inside the block is NotWritableError naming the
    file (else `where`); every other error passes through."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        if not is_refused(e):
            raise
        name = getattr(e, "filename", None) or where
        why = _why(e) if isinstance(e, OSError) else str(e)
        raise NotWritableError(f"cannot write {what} at {name}: {why}; {FIX}") from None

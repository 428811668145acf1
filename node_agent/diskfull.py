"""A write that finds the disk full, turned into DiskFullError (exit 6) with one line naming
what could not be written, where, and the free bytes there. Used by every writer on the
node: the sync engine, its downloads, and atomic record writes."""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from node_agent.errors import DiskFullError

_EDQUOT = getattr(errno, "EDQUOT", None)  # not on Windows
_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, _EDQUOT) if e is not None)


def is_disk_full(e: BaseException) -> bool:
    """A write failed for want of space: ENOSPC, EDQUOT, or SQLite's 'database or disk is full'."""
    if isinstance(e, OSError):
        return e.errno in _FULL_ERRNOS
    if isinstance(e, sqlite3.OperationalError):
        return getattr(e, "sqlite_errorcode", None) == 13 or "disk is full" in str(e)  # SQLITE_FULL
    return False


def free_bytes_at(path: str | Path) -> int | None:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent)."""
    p = Path(path)
    for candidate in (p, *p.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def disk_full_error(what: str, where: str | Path, e: BaseException) -> DiskFullError:
    """One line: what could not be written, where, why, and the free bytes there."""
    why = "disk quota exceeded" if getattr(e, "errno", None) == _EDQUOT else "no space left"
    free = free_bytes_at(where)
    said = f"{free:,} bytes free there" if free is not None else "free space unknown"
    return DiskFullError(f"disk full writing {what} to {where} ({why}; {said})")


@contextmanager
def disk_full_as(what: str, where: str | Path) -> Iterator[None]:
    """Turn a disk-full failure inside the block into DiskFullError (exit 6), naming `what`
    and the file that failed (else `where`); every other error passes through."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        if not is_disk_full(e):
            raise
        filename = getattr(e, "filename", None)
        raise disk_full_error(what, filename or where, e) from None

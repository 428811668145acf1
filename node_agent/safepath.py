"""The one containment rule for every path node_agent writes, links, renames or removes.

A relative name that comes from someone else (a blob name, a manifest path, a renderer's
output file, an AZ_BATCH_* id) is split on both '/' and '\\' and checked component by
component; it must never leave its root. On disk, a path under a root is walked with
`lstat`, never following a symbolic link: a link met on the way is refused, or, in a
folder node_agent owns (a job's view, a sync destination), replaced by a real folder.
Removal never recurses through a link.

What this guards against, and what it does not, is written down in docs/ops.md
("What node_agent guarantees").
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from node_agent.errors import ExitCode, NodeAgentError
from node_agent.logs import get_logger

log = get_logger("safepath")
_DRIVE = re.compile(r"^[A-Za-z]:")
# an empty, '.' or '..' component, with '/' or '\\' as the separator; the variants for the
# fields that allow '.' and/or empty components (a '..' is refused by every one of them)
_BAD_PART = re.compile(r"(?:^|[/\\])(\.{0,2})(?=[/\\]|\Z)")
_BAD_PARTS = {
    (False, False): _BAD_PART,
    (True, False): re.compile(r"(?:^|[/\\])(\.\.|)(?=[/\\]|\Z)"),
    (False, True): re.compile(r"(?:^|[/\\])(\.{1,2})(?=[/\\]|\Z)"),
    (True, True): re.compile(r"(?:^|[/\\])(\.\.)(?=[/\\]|\Z)"),
}
_SEP = re.compile(r"[/\\]")
# Characters that Windows' best-fit ("WorstFit") mapping or NFKC normalisation turns into
# a separator or a dot, and the look-alikes a human reads as one: refused in every name.
LOOKALIKES = frozenset(
    "\u2215\u2044\u29f8\u2571\uff0f\u2216\u29f5\u29f9\uff3c\ufe68\u2024\uff0e\u3002\ufe52\u2025\u2026"
)
_LOOKALIKE = re.compile("[" + re.escape("".join(sorted(LOOKALIKES))) + "]")


def _nfkc_lookalike(rel: str) -> str | None:
    """A character that NFKC compatibility normalisation turns into something holding '.',
    '/' or '\\' (U+FE30 becomes '..', U+2100 'a/c'): what a normalising layer could make
    a separator or a dot component of."""
    for ch in set(rel):
        if ord(ch) > 127:
            n = unicodedata.normalize("NFKC", ch)
            if n != ch and ("." in n or "/" in n or "\\" in n):
                return ch
    return None


class ContainmentError(NodeAgentError):
    """A path that would leave its root, or meets a link where none may be."""

    exit_code = ExitCode.ASSETS


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(name: str) -> str:
    """`name` for a message: control characters as \\xNN, so a hostile name stays on its line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def rel_problem(rel: str, *, allow_dot: bool = False, allow_empty: bool = False) -> str | None:
    """Why `rel` (a relative name, '/' or '\\' separated) is not a safe path below a root.

    The containment rule: not empty, no NUL or other control character, not absolute, no drive, no look-alike of '.'
    or '/', no '..' component. By default a '.' or empty component ('a//b', a trailing '/')
    is refused too, so that a name has one spelling (two blob names, one file); a field that
    is only ever joined to its root may allow them (`allow_dot`, `allow_empty`)."""
    if not rel:
        return "is empty"
    ctl = _CONTROL.search(rel)
    if ctl:
        # a newline or escape in a name becomes a forged line in every log that names it
        return (
            "contains NUL"
            if ctl.group() == "\x00"
            else f"contains control character U+{ord(ctl.group()):04X}"
        )
    if rel.startswith(("/", "\\")):
        return "is an absolute path"
    if _DRIVE.match(rel):
        return "starts with a drive letter"
    # regular expressions, not a loop per character: this runs once per blob of every sync
    if not rel.isascii():
        look = _LOOKALIKE.search(rel)
        ch = look.group() if look else _nfkc_lookalike(rel)
        if ch:
            return f"contains U+{ord(ch):04X} ({unicodedata.name(ch, '?').lower()}), a look-alike of '.' or '/'"
    bad = _BAD_PARTS[allow_dot, allow_empty].search(rel)
    if bad:
        return f"has a '{bad.group(1) or '//'}' component"
    return None


def split_rel(rel: str, what: str) -> list[str]:
    """The components of `rel` split on '/' and '\\'; ContainmentError naming `what` if unsafe."""
    problem = rel_problem(rel)
    if problem:
        raise ContainmentError(
            f"{what} '{shown(rel)}' {problem}: refused (it could leave its folder)"
        )
    return _SEP.split(rel)


def check_component(value: str, what: str) -> str:
    """`value` as one path component (an id used as a folder name), else ContainmentError."""
    problem = rel_problem(value)
    if problem is None and re.search(r"[/\\]", value):
        problem = "contains a path separator"
    if problem is None and _DRIVE.match(value):
        problem = "looks like a drive"
    if problem:
        raise ContainmentError(f"{what} '{shown(value)}' {problem}: refused as a folder name")
    return value


def is_within(root: str | Path, path: str | Path) -> bool:
    """True when `path`, with every link resolved, is `root` or below it (root resolved too)."""
    r = os.path.realpath(root)
    p = os.path.realpath(path)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def ensure_dirs(
    root: str | Path, parts: list[str], *, replace_links: bool, check_root: bool = True
) -> str:
    """Make root/parts[0]/.../parts[-1] real folders, walking with lstat; returns the path.

    A symbolic link (or a file) met on the way is removed and replaced by a folder when
    `replace_links` (the folder is node_agent's own; a link is logged as a warning naming
    it, its target untouched), else ContainmentError. The root itself must be a real
    folder or absent (then it is created); `check_root=False` when the caller verified it."""
    cur = str(root)
    if check_root:
        _real_dir(cur, replace_links=False, what="root")
    for part in parts:
        cur = os.path.join(cur, part)
        _real_dir(cur, replace_links=replace_links, what="folder")
    return cur


def own_root(path: str | Path) -> str:
    """Make `path` a real folder that node_agent owns (a job's view, a sync destination).

    Missing parents are created; a symbolic link (or a file) at `path` itself is replaced
    by an empty folder, never followed, and logged. The parents are the caller's to trust."""
    p = str(path)
    parent = os.path.dirname(p)
    if parent:
        os.makedirs(parent, exist_ok=True)
    _real_dir(p, replace_links=True, what="folder")
    return p


def _real_dir(path: str, *, replace_links: bool, what: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            os.makedirs(path, exist_ok=True) if what == "root" else os.mkdir(path)
            return
        except FileExistsError:  # made at the same moment by another thread or process
            st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        return
    link = stat.S_ISLNK(st.st_mode) or _is_junction(path)
    if not replace_links:
        kind = "a symbolic link" if link else "not a folder"
        raise ContainmentError(f"{what} '{path}' is {kind}: refused, links are never followed")
    if link:
        log.warning(
            "replaced symbolic link '%s' (-> '%s') by a real folder: links are never "
            "followed here, the link's target is untouched",
            path,
            _readlink(path),
        )
    _unlink(path)  # a link (never followed) or a stale file, in a folder node_agent owns
    os.mkdir(path)


def walk_entries(root: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative path with '/', entry) of everything below `root`, never entering a link:
    a link is yielded as an entry (check `is_symlink()`), folders after their contents."""
    stack: list[tuple[str, str, list[os.DirEntry[str]] | None]] = [(root, "", None)]
    while stack:
        path, rel, entries = stack.pop()
        if entries is None:
            with os.scandir(path) as it:
                entries = list(it)
            stack.append((path, rel, entries))
            for e in entries:
                if e.is_dir(follow_symlinks=False) and not _is_junction(e.path):
                    stack.append((e.path, f"{rel}{e.name}/", None))
            continue
        for e in entries:
            yield f"{rel}{e.name}", e


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _unlink(path: str) -> None:
    if _is_junction(path):
        os.rmdir(path)  # removes the junction itself, not its target
    else:
        os.unlink(path)


def remove_tree(path: str | Path) -> None:
    """Remove `path`: a link or file is unlinked (its target untouched), a folder removed
    without ever descending through a link. Absent is fine."""
    p = str(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode) and not _is_junction(p):
        # shutil.rmtree uses the fd-based walk where the OS has it and never follows links
        shutil.rmtree(p)
    elif _is_junction(p):
        os.rmdir(p)
    else:
        os.unlink(p)


def _is_junction(p: str) -> bool:
    is_junction = getattr(os.path, "isjunction", None)
    return bool(is_junction and is_junction(p))


def open_for_write(path: str | Path, *, append: bool = False) -> BinaryIO:
    """Open a file node_agent writes by a fixed name (a task's stdout.txt, a renderer log)
    without following a link someone put in its place: a link at that name is removed
    (logged; its target untouched) and the file opened with O_NOFOLLOW."""
    p = str(path)
    try:
        if stat.S_ISLNK(os.lstat(p).st_mode):
            log.warning("%s was a symbolic link (to %s): replaced, not followed", p, os.readlink(p))
            os.unlink(p)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    return os.fdopen(os.open(p, flags, 0o644), "ab" if append else "wb")

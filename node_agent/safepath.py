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
from pathlib import Path

from node_agent.errors import ExitCode, NodeAgentError

_DRIVE = re.compile(r"^[A-Za-z]:")
# Characters that Windows' best-fit ("WorstFit") mapping or NFKC normalisation turns into
# a separator or a dot, and the look-alikes a human reads as one: refused in every name.
LOOKALIKES = frozenset(
    "\u2215\u2044\u29f8\u2571\uff0f\u2216\u29f5\u29f9\uff3c\ufe68\u2024\uff0e\u3002\ufe52\u2025\u2026"
)


class ContainmentError(NodeAgentError):
    """A path that would leave its root, or meets a link where none may be."""

    exit_code = ExitCode.ASSETS


def rel_problem(rel: str) -> str | None:
    """Why `rel` (a relative name, '/' or '\\' separated) is not a safe path below a root."""
    if not rel:
        return "is empty"
    if "\x00" in rel:
        return "contains NUL"
    if rel.startswith(("/", "\\")):
        return "is an absolute path"
    if _DRIVE.match(rel):
        return "starts with a drive letter"
    for ch in rel:
        if ch in LOOKALIKES:
            return f"contains U+{ord(ch):04X} ({unicodedata.name(ch, '?').lower()}), a look-alike of '.' or '/'"
    for part in re.split(r"[/\\]", rel):
        if part in ("", ".", ".."):
            return f"has a '{part or '//'}' component"
    return None


def split_rel(rel: str, what: str) -> list[str]:
    """The components of `rel` split on '/' and '\\'; ContainmentError naming `what` if unsafe."""
    problem = rel_problem(rel)
    if problem:
        raise ContainmentError(f"{what} '{rel}' {problem}: refused (it could leave its folder)")
    return re.split(r"[/\\]", rel)


def check_component(value: str, what: str) -> str:
    """`value` as one path component (an id used as a folder name), else ContainmentError."""
    problem = rel_problem(value)
    if problem is None and re.search(r"[/\\]", value):
        problem = "contains a path separator"
    if problem is None and _DRIVE.match(value):
        problem = "looks like a drive"
    if problem:
        raise ContainmentError(f"{what} '{value}' {problem}: refused as a folder name")
    return value


def is_within(root: str | Path, path: str | Path) -> bool:
    """True when `path`, with every link resolved, is `root` or below it (root resolved too)."""
    r = os.path.realpath(root)
    p = os.path.realpath(path)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def ensure_dirs(root: str | Path, parts: list[str], *, replace_links: bool) -> str:
    """Make root/parts[0]/.../parts[-1] real folders, walking with lstat; returns the path.

    A symbolic link (or a file) met on the way is removed and replaced by a folder when
    `replace_links` (the folder is node_agent's own), else ContainmentError. The root
    itself must be a real folder or absent (then it is created)."""
    cur = str(root)
    _real_dir(cur, replace_links=False, what="root")
    for part in parts:
        cur = os.path.join(cur, part)
        _real_dir(cur, replace_links=replace_links, what="folder")
    return cur


def _real_dir(path: str, *, replace_links: bool, what: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True) if what == "root" else os.mkdir(path)
        return
    if stat.S_ISDIR(st.st_mode):
        return
    if not replace_links:
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise ContainmentError(f"{what} '{path}' is {kind}: refused, links are never followed")
    os.unlink(path)  # a link (never followed) or a stale file, in a folder node_agent owns
    os.mkdir(path)


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

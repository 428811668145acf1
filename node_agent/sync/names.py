"""Blob names and manifest paths: refuse anything that could land outside the destination.

The generic rule (absolute paths, drives, empty/'.'/'..' components, look-alikes of '.' and
'/') is node_agent.safepath.rel_problem, the one containment rule for every write; a blob
name may not hold a backslash at all, and on Windows the file-name rules apply too."""

from __future__ import annotations

import re

from node_agent.safepath import rel_problem

_WIN_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    # Windows also reads the superscript digits as digits here ("COM¹", "LPT³" are devices):
    # learn.microsoft.com/windows/win32/fileio/naming-a-file, and Go's filepath.IsLocal cases
    + [f"{d}{i}" for d in ("COM", "LPT") for i in [*range(1, 10), "\u00b9", "\u00b2", "\u00b3"]]
)
_WIN_BAD_CHARS = re.compile(r'[<>:"|?*\x00-\x1f]')
MAX_COMPONENT_BYTES = 255


def name_problem(rel: str, *, windows: bool = False) -> str | None:
    """Why `rel` (a '/'-separated relative path) is unsafe as a file path, or None."""
    if "\\" in rel:
        return "contains a backslash"
    problem = rel_problem(rel)
    if problem:
        return problem
    for part in rel.split("/"):
        if len(part) * 4 > MAX_COMPONENT_BYTES and (
            len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES
        ):
            return f"has a component over {MAX_COMPONENT_BYTES} bytes"
        if windows:
            stem = part.split(".")[0].rstrip(" ").upper()
            if stem in _WIN_RESERVED:
                return f"'{part}' is a reserved name on Windows"
            if _WIN_BAD_CHARS.search(part) or part.endswith((" ", ".")):
                return f"'{part}' is not a valid Windows file name"
    return None


class NameChecker:
    """Checks names one by one, remembering earlier ones for collisions.

    Refuses: unsafe names; two names that differ only in case on a case-insensitive
    filesystem; a name that is both a file and a folder of other files (whichever
    comes second in listing order is refused).
    """

    def __init__(self, *, windows: bool = False, case_insensitive: bool = False) -> None:
        self.windows = windows
        self.case_insensitive = case_insensitive
        self._files: dict[str, str] = {}
        self._dirs: set[str] = set()

    def _key(self, rel: str) -> str:
        return rel.casefold() if self.case_insensitive else rel

    def check(self, rel: str) -> str | None:
        """None if `rel` is accepted (and remembered), else the reason it is refused."""
        problem = name_problem(rel, windows=self.windows)
        if problem:
            return problem
        key = self._key(rel)
        if key in self._files:
            other = self._files[key]
            return f"collides with '{other}'" if other != rel else "is listed twice"
        if key in self._dirs:
            return "is also a folder holding other files"
        parents = []  # each folder on the way: str.find, not a Python loop over every character
        i = key.find("/")
        while i != -1:
            parents.append(key[:i])
            i = key.find("/", i + 1)
        for parent in parents:
            if parent in self._files:
                return f"its folder '{self._files[parent]}' is also a file"
        self._files[key] = rel
        self._dirs.update(parents)
        return None


def fs_case_insensitive(folder: str) -> bool:
    """True when `folder`'s filesystem ignores case (probe with a temporary file)."""
    import os
    import tempfile

    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".caseprobe-", dir=folder)
    os.close(fd)
    try:
        head, tail = os.path.split(path)
        return os.path.exists(os.path.join(head, tail.upper()))
    finally:
        os.unlink(path)

"""Reading what a task leaves behind, defensively: its folder is the renderer's to write
(links, FIFOs, huge or malformed files), and its records come from other processes. Shared
by the local-pool backend (`local.py`) and the Batch backend (`batchrest.py`)."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from node_agent.frames import parse_frames

_FRAMES_ARG = re.compile(r"--frames\s+([0-9,x-]+)")


def task_frames(task: dict[str, Any]) -> list[int]:
    """A frame task's frames, from `render --frames X` in its command line."""
    m = _FRAMES_ARG.search(str(task.get("commandLine", "")))
    if not m:
        return []
    try:
        return list(parse_frames(m.group(1)))
    except ValueError:
        return []


def iso_time(text: Any) -> float | None:
    """Epoch seconds of an ISO-8601 time ('...Z' included); None when absent or unreadable."""
    if not text or not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


TAIL_BYTES = 64 * 1024  # what is read of a task's log: its end
EVENTS_BYTES = 16 * 2**20  # what is read of a node's events.jsonl (its end)
JSON_BYTES = 4 * 2**20  # a task's summary.json, the job JSON, the run record


def read_end(path: Path, limit: int) -> bytes:
    """The last `limit` bytes of `path` (from its first whole line when cut), without
    following a link or blocking on a FIFO: a task folder is the renderer's to write."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b""
        start = max(0, st.st_size - limit)
        fh.seek(start)
        data = fh.read(limit)
    if start and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data


def read_json(path: Path) -> dict[str, Any]:
    data = read_end(path, JSON_BYTES + 1)
    if len(data) > JSON_BYTES:
        return {}
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def as_int(value: Any, default: int = 0) -> int:
    """An int from a record field of any type (a damaged or forged record: `default`)."""
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def uploaded_bytes(summary: dict[str, Any]) -> int:
    """The bytes a render summary says it uploaded (entries of the wrong shape count 0)."""
    return sum(as_int(as_dict(o).get("bytes")) for o in as_list(summary.get("outputs")))


def newest_mtime(*paths: Path) -> float | None:
    times = []
    for p in paths:
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            continue
    return max(times) if times else None


def first_reason(stderr: Path) -> str:
    """node_agent's one-line error from the end of a task's stderr.txt, else its last line."""
    lines = [ln.strip() for ln in read_text(stderr).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("node-agent: error: "):
            return ln.removeprefix("node-agent: error: ")
    return lines[-1] if lines else ""


def read_text(path: Path, limit: int = TAIL_BYTES) -> str:
    return read_end(path, limit).decode("utf-8", errors="replace")

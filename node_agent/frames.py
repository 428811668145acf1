"""Frame sets: `1-100`, `1-100x5`, `1,5,10-12`, and splitting them into task chunks."""

from __future__ import annotations

import re

MAX_FRAMES = 100_000
_PART = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$")


def parse_frames(text: str) -> list[int]:
    """Parse a frame set into a sorted list of unique frames; ValueError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("frame set is empty")
    frames: set[int] = set()
    for raw in text.replace(" ", "").split(","):
        m = _PART.match(raw)
        if not m:
            raise ValueError(f"'{raw}' is not a frame, a range 'a-b' or a stepped range 'a-bxN'")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if end < start:
            raise ValueError(f"'{raw}': range ends before it starts")
        if step < 1:
            raise ValueError(f"'{raw}': step must be at least 1")
        if (end - start) // step + 1 + len(frames) > MAX_FRAMES:
            raise ValueError(f"'{raw}': more than {MAX_FRAMES} frames")
        frames.update(range(start, end + 1, step))
    return sorted(frames)


def format_frames(frames: list[int]) -> str:
    """The shortest frame-set text for a sorted list (`1-4,7,9-13x2`)."""
    if not frames:
        return ""
    parts: list[str] = []
    i = 0
    while i < len(frames):
        j = i
        if i + 1 < len(frames):
            step = frames[i + 1] - frames[i]
            while j + 1 < len(frames) and frames[j + 1] - frames[j] == step:
                j += 1
            if j - i >= 2 or (j - i == 1 and step == 1):
                parts.append(f"{frames[i]}-{frames[j]}" + ("" if step == 1 else f"x{step}"))
                i = j + 1
                continue
        parts.append(str(frames[i]))
        i += 1
    return ",".join(parts)


def chunk_frames(frames: list[int], per_task: int) -> list[list[int]]:
    return [frames[i : i + per_task] for i in range(0, len(frames), per_task)]

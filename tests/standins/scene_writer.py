#!/usr/bin/env python3
"""Stand-in renderer that writes into its scene folder, as real ones do (Blender's
`.blend1` backup, Arnold's `.tx` next to a texture, Maya workspace files, sim caches).
Not a real renderer.

Usage: scene_writer.py <scene_dir> <report.json> [<output_dir> <frames>]

In <scene_dir> it:
  - overwrites the first bytes of scene.blend in place (open r+b: the same inode),
  - truncates textures/a.png to 0 bytes,
  - appends a line to notes.txt,
  - deletes textures/b.png,
  - saves scene.blend1 (a renamed-over temporary, as Blender saves), textures/a.tx,
    and a new subfolder cache/sim_0001.bc.
Before writing, it records in <report.json> what it found: whether an earlier run's writes
(in this job's view) are there, and the bytes of every file (sha256). With <output_dir>
and <frames> it then writes one PNG per frame, frame_####.png, and prints Blender's line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import png  # noqa: E402

MARK = b"SCENE-WRITER-WAS-HERE"


def snapshot(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def frames_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return out


def main() -> int:
    scene_dir, report = Path(sys.argv[1]), Path(sys.argv[2])
    scene = scene_dir / "scene.blend"
    seen = {
        "files": snapshot(scene_dir),
        "earlier_run": (scene_dir / "cache" / "sim_0001.bc").is_file(),
        "scene_starts_with_mark": scene.read_bytes().startswith(MARK),
        "b_png_present": (scene_dir / "textures" / "b.png").exists(),
    }
    with open(scene, "r+b") as fh:  # in place: the file's own inode
        fh.write(MARK)
    if (scene_dir / "textures" / "a.png").exists():
        os.truncate(scene_dir / "textures" / "a.png", 0)
    with open(scene_dir / "notes.txt", "ab") as fh:
        fh.write(b"\nappended by the renderer\n")
    (scene_dir / "textures" / "b.png").unlink(missing_ok=True)
    tmp = scene_dir / "scene.blend1@"
    tmp.write_bytes(scene.read_bytes())
    os.replace(tmp, scene_dir / "scene.blend1")
    (scene_dir / "textures" / "a.tx").write_bytes(b"tx made by the renderer")
    (scene_dir / "cache").mkdir(exist_ok=True)
    with open(scene_dir / "cache" / "sim_0001.bc", "ab") as fh:
        fh.write(b"sim step\n")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(seen, indent=2))
    if len(sys.argv) > 4:
        out = Path(sys.argv[3])
        out.mkdir(parents=True, exist_ok=True)
        for n in frames_of(sys.argv[4]):
            path = out / f"frame_{n:04d}.png"
            path.write_bytes(png(shade=n * 40 % 256))
            print(f"Saved: '{path}'", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

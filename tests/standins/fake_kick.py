#!/usr/bin/env python3
"""Stand-in for Arnold's standalone renderer `kick` (tests only; not Arnold).

Accepts `kick -i <scene.ass> -o <image> -of <fmt> -dw -dp -v N -set node.param value ...`
and prints Arnold-like lines. See _common.py for STANDIN_MODE.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import flag, run  # noqa: E402

argv = sys.argv[1:]
out = Path(flag(argv, "-o", "out.png"))
frame = 1
for i, a in enumerate(argv):
    if a == "-set" and argv[i + 1] == "options.frame":
        frame = int(argv[i + 2])
sys.exit(
    run(
        [(frame, out)],
        lambda f, p: f"00:00:01 512MB | {p:3d}% done - 8 rays/pixel",
        {
            "license": "00:00:00 40MB ERROR | [clm] license not available: No valid license found",
            "missing": "00:00:00 40MB ERROR | [texturesys] /mnt/studio/tex/a.tx: file not found",
            "oom": "00:00:03 15000MB ERROR | std::bad_alloc",
            "saved": "00:00:02 512MB | writing file `{path}'",
        },
    )
)

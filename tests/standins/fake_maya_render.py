#!/usr/bin/env python3
"""Stand-in for Maya's command-line renderer `Render` (tests only; not Maya).

Accepts `Render -r arnold|vray|sw -rd <dir> -im <prefix> -fnc name#.ext -pad N -of <fmt>
-s <start> -e <end> -b <step> ... <scene>` and prints Maya/Arnold-like lines.
See _common.py for STANDIN_MODE.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import flag, run  # noqa: E402

argv = sys.argv[1:]
rd = Path(flag(argv, "-rd", "."))
prefix = flag(argv, "-im", "frame_")
pad = int(flag(argv, "-pad", "4"))
ext = {"jpeg": "jpg"}.get(flag(argv, "-of", "png"), flag(argv, "-of", "png"))
start, end, step = (int(flag(argv, f, "1")) for f in ("-s", "-e", "-b"))
if not Path(argv[-1]).suffix:
    sys.exit("Render: no scene given")
frames = [(f, rd / f"{prefix}{f:0{pad}d}.{ext}") for f in range(start, end + 1, step)]
sys.exit(
    run(
        frames,
        lambda f, p: f"00:00:0{p // 50} 1024MB | [mtoa] frame {f}: {p}% done - 12 rays/pixel",
        {
            "license": "// Error: [mtoa] License was not obtained: No valid license found",
            "missing": "// Error: [mtoa] texture C:/proj/tex/wood.tif not found",
            "oom": "// Error: Out of memory while allocating 2048 MB",
            "saved": "Result: {path}",
        },
    )
)

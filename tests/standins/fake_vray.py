#!/usr/bin/env python3
"""Stand-in for V-Ray standalone `vray` (tests only; not V-Ray).

Accepts `vray -sceneFile=<f> -frames=<list> -imgFile=<dir/stem.ext> -display=0 ...` and
writes `<stem>.<NNNN>.<ext>` like V-Ray. The list is V-Ray's `b0[-e0[,s0]]{;bn[-en[,sn]]}`. See _common.py for STANDIN_MODE.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import colon, run  # noqa: E402

argv = sys.argv[1:]
img = Path(colon(argv, "-imgFile", "=") or "out.png")
text = colon(argv, "-frames", "=") or "1"
frames: list[int] = []
for part in text.split(";"):
    span, _, step = part.partition(",")
    a, _, b = span.partition("-")
    frames += list(range(int(a), int(b or a) + 1, int(step or 1)))
sys.exit(
    run(
        [(f, img.with_name(f"{img.stem}.{f:04d}{img.suffix}")) for f in frames],
        lambda f, p: f"[2026/Nov/22|04:00:00] Rendering image...: {p}.00% [ 0h  0m  1.0s]",
        {
            "license": "[2026/Nov/22|04:00:00] error: Could not obtain a license (-100). "
            "Failed to connect to license server",
            "missing": "[2026/Nov/22|04:00:00] error: Cannot find file C:\\proj\\tex\\wood.tif",
            "oom": "[2026/Nov/22|04:00:00] error: Not enough memory to render the frame",
            "saved": '[2026/Nov/22|04:00:01] Successfully written image file "{path}"',
        },
    )
)

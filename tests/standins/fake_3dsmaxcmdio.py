#!/usr/bin/env python3
"""Stand-in for 3ds Max's `3dsmaxcmdio.exe` (tests only; not 3ds Max).

Accepts `-secure off -rfw:0 -v:5 -start:N -end:N [-nthFrame:N] -outputName:<dir/stem.ext>
[-pathFile:<mxp>] <scene.max>` and writes `<stem><NNNN>.<ext>`. See _common.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import colon, run  # noqa: E402

argv = sys.argv[1:]
out = Path(colon(argv, "-outputName") or "frame_.png")
start, end = int(colon(argv, "-start") or 1), int(colon(argv, "-end") or 1)
step = int(colon(argv, "-nthFrame") or 1)
sys.exit(
    run(
        [(f, out.with_name(f"{out.stem}{f:04d}{out.suffix}")) for f in range(start, end + 1, step)],
        lambda f, p: f"[V-Ray] frame {f}: Rendering image...: {p}.0%",  # 3ds Max + V-Ray
        {
            "license": "ERROR: 3ds Max license error: license not available",
            "missing": "WARNING: Missing external file: C:\\proj\\maps\\wood.jpg",
            "oom": "ERROR: Out of memory",
            "saved": "Frame saved: {path}",
        },
    )
)
